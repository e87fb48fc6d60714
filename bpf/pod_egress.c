// SPDX-License-Identifier: GPL-2.0
/* S-LXC: a pod's egress in the spirit of Cilium's bpf_lxc (seed 004, Cilium
 * PR 42926 "bpf: avoid redundant mac rewrite in common case").
 *
 * from_pod sees every frame the pod sends: on veth from the host side's tc
 * ingress, on netkit from the hook that runs on the pod side's transmit
 * (BPF_NETKIT_PEER, attached through the primary device).
 *
 *   ARP request for the gateway  -> ARP reply with the router MAC, sent back
 *                                   to the pod (bpf_redirect): the host's
 *                                   kernel never sees the request
 *   IPv6 NS for the gateway      -> NA with the router MAC, likewise
 *   anything else                -> the host's stack (it routes and, with
 *                                   ip_forward, decrements the TTL itself)
 *
 * On netkit in L3 mode (IFF_NOARP) the pod sends neither ARP nor NS.
 *
 * Variants, on the way to the stack:
 *   (none)               no-rewrite: the PR, straight to the stack
 *   VARIANT_L3_REWRITE   l3-rewrite: what the PR removed (ipv4_l3/ipv6_l3):
 *                        dst MAC := router MAC, TTL/hop limit - 1, the IPv4
 *                        header checksum updated incrementally (RFC 1624)
 *   VARIANT_TTL_NO_CSUM  ttl-no-csum (known-bad): the same, minus the IPv4
 *                        header checksum update
 *
 * The lab writes the gateway addresses and the router MAC into "config".
 */
// nslab-variant: VARIANT_L3_REWRITE
// nslab-variant: VARIANT_TTL_NO_CSUM
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "nslab_csum.h"

#if defined(VARIANT_L3_REWRITE) || defined(VARIANT_TTL_NO_CSUM)
#define L3_REWRITE 1
#endif

#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2
#define NDISC_NEIGHBOUR_SOLICITATION 135
#define NDISC_NEIGHBOUR_ADVERTISEMENT 136
#define ND_OPT_SOURCE_LL_ADDR 1
#define ND_OPT_TARGET_LL_ADDR 2
#define NA_FLAGS_ROUTER_SOLICITED_OVERRIDE bpf_htonl(0xe0000000)
#define NOT_OURS -1   /* ndisc_respond: not an NS for the gateway */

/* Written by the lab (key 0). */
struct lxc_config {
	__be32 gateway4;
	__u8 gateway6[16];
	__u8 router_mac[ETH_ALEN];
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lxc_config);
} config SEC(".maps");

/* What the program did, read by the lab. */
enum { ARP_REPLIES, NA_REPLIES, REWRITTEN_V4, REWRITTEN_V6, TO_STACK, NR_COUNTERS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NR_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* An ARP packet for IPv4 over Ethernet (linux/if_arp.h needs libc's headers). */
struct arp_eth {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__be32 sip;
	__u8 tha[ETH_ALEN];
	__be32 tip;
} __attribute__((packed));

/* A neighbour solicitation or advertisement with one link-layer address option. */
struct nd_lla {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 flags;
	__u8 target[16];
	__u8 opt_type;
	__u8 opt_len;     /* in units of 8 bytes */
	__u8 lladdr[ETH_ALEN];
};

/* The tail of the IPv6 pseudo-header (RFC 8200 section 8.1). */
struct pseudo_tail {
	__be32 length;
	__be32 next_header;
};

static __always_inline void count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &slot);

	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline int same_in6(const void *a, const void *b)
{
	const __u32 *x = a, *y = b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* Cilium's arp_respond(): answer the pod's "who has <gateway>" in place and
 * send it back out of the device it came in on. */
static __always_inline int arp_respond(struct __sk_buff *skb, const struct lxc_config *cfg)
{
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = (void *)(long)skb->data;
	struct arp_eth *arp = (void *)(eth + 1);
	__u8 pod_mac[ETH_ALEN];
	__be32 pod_ip;

	if ((void *)(arp + 1) > data_end)
		return TC_ACT_OK;
	if (arp->htype != bpf_htons(ARPHRD_ETHER) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != ETH_ALEN || arp->plen != 4 || arp->op != bpf_htons(ARPOP_REQUEST) ||
	    arp->tip != cfg->gateway4)
		return TC_ACT_OK;

	__builtin_memcpy(pod_mac, arp->sha, ETH_ALEN);
	pod_ip = arp->sip;
	__builtin_memcpy(eth->h_dest, pod_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, cfg->router_mac, ETH_ALEN);
	arp->op = bpf_htons(ARPOP_REPLY);
	__builtin_memcpy(arp->sha, cfg->router_mac, ETH_ALEN);
	arp->sip = cfg->gateway4;
	__builtin_memcpy(arp->tha, pod_mac, ETH_ALEN);
	arp->tip = pod_ip;
	count(ARP_REPLIES);
	return bpf_redirect(skb->ifindex, 0);
}

/* The same for IPv6: the pod's NS for the gateway becomes an NA with the
 * router MAC. The ICMPv6 checksum is computed from scratch, pseudo-header
 * included (the addresses change, so no incremental shortcut). */
static __always_inline int ndisc_respond(struct __sk_buff *skb, const struct lxc_config *cfg)
{
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = (void *)(long)skb->data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct nd_lla *nd = (void *)(ip6 + 1);
	struct pseudo_tail tail = {
		.length = bpf_htonl(sizeof(*nd)),
		.next_header = bpf_htonl(IPPROTO_ICMPV6),
	};
	struct in6_addr unspecified = {};
	__s64 sum;

	if ((void *)(nd + 1) > data_end)
		return NOT_OURS;
	if (ip6->nexthdr != IPPROTO_ICMPV6 || ip6->payload_len != bpf_htons(sizeof(*nd)) ||
	    ip6->hop_limit != 255 || nd->type != NDISC_NEIGHBOUR_SOLICITATION ||
	    nd->code != 0 || nd->opt_type != ND_OPT_SOURCE_LL_ADDR || nd->opt_len != 1 ||
	    !same_in6(nd->target, cfg->gateway6) || same_in6(&ip6->saddr, &unspecified))
		return NOT_OURS;   /* DAD probes (from ::) included */

	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, cfg->router_mac, ETH_ALEN);
	ip6->daddr = ip6->saddr;
	__builtin_memcpy(&ip6->saddr, cfg->gateway6, sizeof(ip6->saddr));
	nd->type = NDISC_NEIGHBOUR_ADVERTISEMENT;
	nd->flags = NA_FLAGS_ROUTER_SOLICITED_OVERRIDE;
	nd->opt_type = ND_OPT_TARGET_LL_ADDR;
	__builtin_memcpy(nd->lladdr, cfg->router_mac, ETH_ALEN);
	nd->checksum = 0;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&ip6->saddr, 2 * sizeof(ip6->saddr), 0);
	if (sum >= 0)
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&tail, sizeof(tail), sum);
	if (sum >= 0)
		sum = bpf_csum_diff(NULL, 0, (__be32 *)nd, sizeof(*nd), sum);
	if (sum < 0)
		return TC_ACT_SHOT;
	nd->checksum = (__sum16)~csum_fold32(sum);
	count(NA_REPLIES);
	return bpf_redirect(skb->ifindex, 0);
}

#ifdef L3_REWRITE
/* Cilium rewrites only what it routes to another node. Link-local and
 * multicast traffic (the pod's NA to the host, MLD) is for this link only:
 * a lower hop limit would make the host drop it (ND insists on 255). */
static __always_inline int routed_v6(const struct ipv6hdr *ip6)
{
	__u8 first = ip6->daddr.s6_addr[0], second = ip6->daddr.s6_addr[1];

	return first != 0xff && !(first == 0xfe && (second & 0xc0) == 0x80);
}

static __always_inline int routed_v4(const struct iphdr *ip)
{
	__u8 first = ((const __u8 *)&ip->daddr)[0];

	return first < 224 && first != 127;   /* not 224/3 (multicast, broadcast), not loopback */
}
#endif

/* Cilium's ipv4_l3()/ipv6_l3() on the way to the stack, as before the PR. */
static __always_inline int l3_rewrite(struct __sk_buff *skb, const struct lxc_config *cfg,
				      int ipv6)
{
#ifdef L3_REWRITE
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = (void *)(long)skb->data;

	if (ipv6) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		__u8 hop_limit;

		/* Hop limit 1 is left to the stack, which sends Time Exceeded. */
		if ((void *)(ip6 + 1) > data_end || !routed_v6(ip6) || ip6->hop_limit <= 1)
			goto to_stack;
		hop_limit = ip6->hop_limit - 1;
		if (bpf_skb_store_bytes(skb, ETH_HLEN + __builtin_offsetof(struct ipv6hdr, hop_limit),
					&hop_limit, sizeof(hop_limit), 0))
			return TC_ACT_SHOT;
		count(REWRITTEN_V6);
	} else {
		struct iphdr *ip = (void *)(eth + 1);
		const __u32 ttl_off = __builtin_offsetof(struct iphdr, ttl);
		__be16 old, new;

		if ((void *)(ip + 1) > data_end || !routed_v4(ip) || ip->ttl <= 1)
			goto to_stack;
		/* TTL shares its 16-bit checksum word with the protocol. */
		old = *(__be16 *)&ip->ttl;
		new = bpf_htons(bpf_ntohs(old) - 0x100);
#ifdef VARIANT_TTL_NO_CSUM
		if (bpf_skb_store_bytes(skb, ETH_HLEN + ttl_off, &new, sizeof(new), 0))
#else
		if (ipv4_store16(skb, ETH_HLEN, ttl_off, old, new))
#endif
			return TC_ACT_SHOT;
		count(REWRITTEN_V4);
	}
	if (bpf_skb_store_bytes(skb, __builtin_offsetof(struct ethhdr, h_dest), cfg->router_mac,
				ETH_ALEN, 0))
		return TC_ACT_SHOT;
to_stack:
#endif
	count(TO_STACK);
	return TC_ACT_OK;
}

SEC("tc")
int from_pod(struct __sk_buff *skb)
{
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = (void *)(long)skb->data;
	__u32 zero = 0;
	const struct lxc_config *cfg = bpf_map_lookup_elem(&config, &zero);
	int ret;

	if (!cfg || (void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	switch (eth->h_proto) {
	case bpf_htons(ETH_P_ARP):
		return arp_respond(skb, cfg);
	case bpf_htons(ETH_P_IPV6):
		ret = ndisc_respond(skb, cfg);
		return ret != NOT_OURS ? ret : l3_rewrite(skb, cfg, 1);
	case bpf_htons(ETH_P_IP):
		return l3_rewrite(skb, cfg, 0);
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
