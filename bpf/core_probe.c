// SPDX-License-Identifier: GPL-2.0
/* nslab's own self-test program (not a scenario): it proves that building,
 * loading, maps, every attach point and BPF_PROG_TEST_RUN really work.
 *
 * tc_count   counts frames per IP protocol; when asked, decrements the IPv4
 *            TTL with an incremental header checksum update, or drops all.
 * xdp_count  counts frames per IP protocol; when asked, drops all.
 *
 * Known-bad variant: -DVARIANT_NO_CSUM_UPDATE decrements the TTL but leaves
 * the header checksum alone, so a check that must catch it can be proven.
 */
// nslab-variant: VARIANT_NO_CSUM_UPDATE
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "nslab_csum.h"

/* Count slot for frames that are not IPv4 (ARP, IPv6) or too short to tell;
 * protocol 255 is reserved by IANA, so it never collides with a real one. */
#define NOT_IPV4 255

/* Written by the lab (map "settings", key 0); all zero = count and pass. */
struct probe_settings {
	__u8 tc_dec_ttl;
	__u8 tc_drop;
	__u8 xdp_drop;
	__u8 reserved;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct probe_settings);
} settings SEC(".maps");

/* Frames seen, keyed by IPv4 protocol number. */
struct protocol_counts {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
};

struct protocol_counts tc_counts SEC(".maps");
struct protocol_counts xdp_counts SEC(".maps");

static __always_inline const struct probe_settings *get_settings(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&settings, &zero);
}

static __always_inline void count(void *counts, __u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(counts, &slot);

	if (n)
		__sync_fetch_and_add(n, 1);
}

/* The IPv4 header behind an Ethernet header, or NULL. */
static __always_inline struct iphdr *ipv4_header(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return NULL;
	return ip;
}

static __always_inline long decrement_ttl(struct __sk_buff *skb, struct iphdr *ip)
{
	/* TTL is the high byte of the 16-bit checksum word it shares with the protocol. */
	__be16 old = *(__be16 *)&ip->ttl;
	__be16 new = bpf_htons(bpf_ntohs(old) - 0x100);
	const __u32 ttl_off = __builtin_offsetof(struct iphdr, ttl);

#ifdef VARIANT_NO_CSUM_UPDATE
	/* Known-bad: the byte changes, the header checksum does not. */
	return bpf_skb_store_bytes(skb, ETH_HLEN + ttl_off, &new, sizeof(new), 0);
#else
	return ipv4_store16(skb, ETH_HLEN, ttl_off, old, new);
#endif
}

SEC("tc")
int tc_count(struct __sk_buff *skb)
{
	struct iphdr *ip = ipv4_header((void *)(long)skb->data, (void *)(long)skb->data_end);
	const struct probe_settings *s = get_settings();

	count(&tc_counts, ip ? ip->protocol : NOT_IPV4);
	if (!s)
		return TC_ACT_OK;
	if (s->tc_drop)
		return TC_ACT_SHOT;
	if (ip && s->tc_dec_ttl && ip->ttl > 1)
		return decrement_ttl(skb, ip) ? TC_ACT_SHOT : TC_ACT_OK;
	return TC_ACT_OK;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	struct iphdr *ip = ipv4_header((void *)(long)ctx->data, (void *)(long)ctx->data_end);
	const struct probe_settings *s = get_settings();

	count(&xdp_counts, ip ? ip->protocol : NOT_IPV4);
	return s && s->xdp_drop ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
