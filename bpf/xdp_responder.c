// SPDX-License-Identifier: GPL-2.0
/* S-XDP: an XDP ICMP / ICMPv6 echo responder, after the article in seeds 001
 * and 003 ("超XDP入門 Part3"). Echo requests are turned into replies in place
 * and sent back with XDP_TX: MACs and addresses swapped, type changed.
 *
 * The checksum handling is the variant (one source, defines):
 *   (none)               icmp-ip-csum: bpf_csum_diff over the ICMP header and,
 *                        as the article ends, over the IPv4 header too
 *   VARIANT_ICMP_CSUM    icmp-csum: ICMP header only; swapping the addresses
 *                        leaves the IPv4 header checksum as it was
 *   VARIANT_NO_CSUM      no-csum (known-bad): the type changes, the checksum not
 *   VARIANT_RFC1141      rfc1141 (known-bad): the type change folded in with
 *                        RFC 1141's HC' = HC + m + ~m', which gives -0 (0xffff)
 *                        where a recomputation gives 0x0000 (RFC 1624 section 3)
 *
 * Both bpf_csum_diff variants have the mirror-image flaw: on an all-zero reply
 * (identifier 0, sequence 0, zero payload; IPv4 only) they write 0x0000 where
 * 0xffff is due, and receivers drop it. The lab's tests show both corners.
 *
 * IPv6: swapping the addresses leaves the pseudo-header sum alone, the type
 * change (128 -> 129) does not; there is no IP header checksum.
 *
 * xdp_pass is the do-nothing program for the peer: a native-mode veth only
 * delivers XDP_TX frames to a peer that runs XDP (NAPI) itself.
 */
// nslab-variant: VARIANT_ICMP_CSUM
// nslab-variant: VARIANT_NO_CSUM
// nslab-variant: VARIANT_RFC1141
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "nslab_csum.h"

#define ICMP_ECHO_REQ 8
#define ICMP_ECHO_REP 0
#define ICMPV6_ECHO_REQ 128
#define ICMPV6_ECHO_REP 129
#define IP_MF_OFFSET 0x3fff   /* "more fragments" and the fragment offset */

/* Only the article's final program refreshes the IPv4 header checksum. */
#if !defined(VARIANT_ICMP_CSUM) && !defined(VARIANT_NO_CSUM) && !defined(VARIANT_RFC1141)
#define UPDATE_IP_CSUM 1
#endif

/* ICMP and ICMPv6 echo share this 8-byte header (linux/icmp.h drags in libc's
 * socket headers, which a BPF target cannot include). */
struct echo_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};

/* Counters, read by the lab: which requests the program answered itself. */
enum { ANSWERED_V4, ANSWERED_V6, PASSED, NR_COUNTERS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NR_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &slot);

	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void swap_eth_addr(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
}

#ifdef VARIANT_RFC1141
/* RFC 1141 eqn. 2, HC' = HC + m + ~m' in one's complement: the formula RFC 1624
 * corrected. End-around carry never yields 0x0000, so where the right answer
 * is 0x0000 this gives 0xffff. Kept for the known-bad variant only. */
static __always_inline __u16 rfc1141_update(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u32)check + old + (__u16)~new;

	return csum_fold32(sum);
}
#endif

/* The echo header's type word (type, code) from request to reply. */
static __always_inline void echo_to_reply(void *hdr, __u8 reply_type)
{
	struct echo_hdr *icmp = hdr;
#if defined(VARIANT_NO_CSUM)
	icmp->type = reply_type;
#elif defined(VARIANT_RFC1141)
	__u16 old, new;

	__builtin_memcpy(&old, icmp, sizeof(old));
	icmp->type = reply_type;
	__builtin_memcpy(&new, icmp, sizeof(new));
	icmp->checksum = rfc1141_update(icmp->checksum, old, new);
#else
	/* The article's way: diff the 8-byte header before and after, with the
	 * checksum field zeroed in the "after" copy, then fold and complement. */
	struct echo_hdr before = *icmp;
	__s64 value;

	icmp->type = reply_type;
	icmp->checksum = 0;
	value = bpf_csum_diff((__be32 *)&before, sizeof(before), (__be32 *)icmp,
			      sizeof(*icmp), 0);
	if (value >= 0)
		icmp->checksum = (__u16)~csum_fold32(value);
#endif
}

#ifdef UPDATE_IP_CSUM
/* The article's last step: the IPv4 header checksum by the same diff (equal
 * in value to the old one: the swap is neutral and nothing else changed). */
static __always_inline void refresh_ip_check(struct iphdr *ip, struct iphdr *before)
{
	__s64 value;

	ip->check = 0;
	value = bpf_csum_diff((__be32 *)before, sizeof(*before), (__be32 *)ip, sizeof(*ip), 0);
	if (value >= 0)
		ip->check = (__u16)~csum_fold32(value);
}
#endif

static __always_inline int echo_v4(struct ethhdr *eth, void *data_end)
{
	struct iphdr *ip = (void *)(eth + 1);
	struct echo_hdr *icmp = (void *)(ip + 1);

	if ((void *)(icmp + 1) > data_end)
		return XDP_PASS;
	/* The article's fixed layout: no IP options, no fragments. */
	if (ip->ihl != 5 || ip->protocol != IPPROTO_ICMP ||
	    (ip->frag_off & bpf_htons(IP_MF_OFFSET)))
		return XDP_PASS;
	if (icmp->type != ICMP_ECHO_REQ || icmp->code != 0)
		return XDP_PASS;

#ifdef UPDATE_IP_CSUM
	struct iphdr ip_before = *ip;
#endif
	__be32 addr = ip->saddr;

	swap_eth_addr(eth);
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	echo_to_reply(icmp, ICMP_ECHO_REP);
#ifdef UPDATE_IP_CSUM
	refresh_ip_check(ip, &ip_before);
#endif
	count(ANSWERED_V4);
	return XDP_TX;
}

static __always_inline int echo_v6(struct ethhdr *eth, void *data_end)
{
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct echo_hdr *icmp6 = (void *)(ip6 + 1);
	struct in6_addr addr;

	if ((void *)(icmp6 + 1) > data_end)
		return XDP_PASS;
	if (ip6->nexthdr != IPPROTO_ICMPV6 || icmp6->type != ICMPV6_ECHO_REQ ||
	    icmp6->code != 0)
		return XDP_PASS;

	swap_eth_addr(eth);
	addr = ip6->saddr;
	ip6->saddr = ip6->daddr;
	ip6->daddr = addr;
	echo_to_reply(icmp6, ICMPV6_ECHO_REP);
	count(ANSWERED_V6);
	return XDP_TX;
}

SEC("xdp")
int xdp_echo(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = (void *)(long)ctx->data;
	int verdict = XDP_PASS;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		verdict = echo_v4(eth, data_end);
	else if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		verdict = echo_v6(eth, data_end);
	if (verdict == XDP_PASS)
		count(PASSED);
	return verdict;
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
