// SPDX-License-Identifier: GPL-2.0
/* S-REVNAT: a small nodeport load balancer with SNAT, in the spirit of Cilium's
 * nodeport + SNAT datapath, and its reverse NAT of ICMP errors (Cilium PR 43196,
 * RFC 5508 section 4.1: an ICMP checksum covers the quoted packet).
 *
 *   client ── [client side] LB [backend side] ── router ── backend
 *
 * lb_from_client   tc ingress of the client-facing device. A packet to a service
 *                  (VIP:port, "services" map) is DNATed to its backend and SNATed to
 *                  the node IP and a port from the NAT range; with masquerading on,
 *                  a packet to the masquerade prefix is SNATed only (pure SNAT, the
 *                  seed's setup). ICMP errors the client sends about reply traffic
 *                  go out translated the same way (the forward path).
 * lb_from_backend  tc ingress of the backend-facing device. Replies are reverse-NATed;
 *                  ICMP errors about forward traffic are RevNATed from their quoted
 *                  header: outer destination, quoted source, port and destination.
 *
 * NAT table, both directions as Cilium keeps them (LRU hashes of struct nat_tuple):
 *   nat_fwd  client→VIP as the client sends it   →  node→backend as sent on
 *   nat_rev  backend→node as the backend replies →  VIP→client as the client expects
 * An ICMP echo's identifier stands in for the ports: a request carries it in sport,
 * a reply in dport, so swapping a tuple turns one into the other.
 *
 * Forwarding: bpf_fib_lookup, then bpf_redirect with the MACs it returns, or
 * bpf_redirect_neigh while the next hop's neighbour entry is unresolved; the TTL or
 * hop limit is decremented as a router does. Whatever the FIB will not forward (or
 * everything, with config.redirect = 0, which BPF_PROG_TEST_RUN uses) is handed to
 * the stack with TC_ACT_OK.
 *
 * Checksums. Ordinary packets use bpf_l3/l4_csum_replace, which also keep a
 * CHECKSUM_PARTIAL skb right (pseudo-header changes go into the pending seed, port
 * changes wait for the final sum). An ICMP error is never CHECKSUM_PARTIAL: its
 * checksums are plain arithmetic on the fields (RFC 1624 eqn. 3), and each change is
 * balanced by a checksum change inside the same sum, so skb->csum of a
 * CHECKSUM_COMPLETE skb stays right without touching it. With A the quoted address
 * change and P the quoted port (or echo id) change:
 *   quoted IPv4 checksum    absorbs A;
 *   quoted L4 checksum      absorbs its pseudo-header share of A (TCP, UDP, ICMPv6;
 *                           none for ICMPv4 echo) plus P, when the quote holds it
 *                           (not in a TCP quote shorter than 18 bytes, nor a UDP
 *                           checksum of 0);
 *   ICMP/ICMPv6 checksum    absorbs the net change of the quoted bytes: with the L4
 *                           checksum present, IPv4: -pseudo(A), IPv6: 0; absent,
 *                           IPv4: P, IPv6: A + P. ICMPv6 also has a pseudo-header,
 *                           so the outer address change is folded in as well.
 *
 * Known-bad variant VARIANT_PREFIX: the behaviour before PR 43196. The quote is
 * rewritten with its own checksums, the outer header too (with ICMPv6's pseudo-header
 * share: Cilium's snat_v6_rewrite_headers folds an address change into the rewritten
 * header's L4 checksum), but the ICMP checksum never learns about the quoted changes.
 * Where the quoted changes sum to zero it is right anyway: an ICMPv4 echo quote, and
 * any IPv6 quote that holds its L4 checksum (topologies/lb_snat.py, OUTCOMES).
 *
 * Limits: no IPv4 options parsing beyond ihl, no IPv6 extension headers, no IP
 * fragments; NAT entries are never aged out (LRU eviction only).
 */
// nslab-variant: VARIANT_PREFIX
#include <linux/bpf.h>
#include <linux/icmpv6.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "nslab_csum.h"

#define AF_INET 2
#define AF_INET6 10

/* linux/icmp.h drags libc's sys/socket.h in (through linux/if.h): its few names here. */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

/* The first 8 bytes of an ICMP or ICMPv6 message, an echo's layout. */
struct icmp_head {
	__u8 type;
	__u8 code;
	__sum16 check;
	__be16 id;
	__be16 seq;
};
#define NAT_RETRIES 32

union lb_addr {
	__be32 v4;		/* IPv4 lives in the first word; the other three are zero */
	__be32 w[4];
	__u8 b[16];
};

struct nat_tuple {
	union lb_addr saddr;
	union lb_addr daddr;
	__be16 sport;		/* ICMP echo: the identifier of a request */
	__be16 dport;		/* ICMP echo: the identifier of a reply */
	__u8 proto;
	__u8 family;		/* 4 or 6 */
	__u16 pad;
};

struct svc_key {
	union lb_addr vip;
	__be16 port;
	__u8 proto;
	__u8 family;
};

struct svc_backend {
	union lb_addr addr;
	__be16 port;
	__u16 pad;
};

/* Written by the lab (map "config", key 0). */
struct lb_config {
	union lb_addr node4;		/* the node IPs clients are SNATed to */
	union lb_addr node6;
	union lb_addr masq4;		/* SNAT-only destinations: prefix and length */
	union lb_addr masq6;
	__u16 nat_port_min;		/* host byte order */
	__u16 nat_port_max;
	__u8 masq4_len;			/* 0xff: no masquerading for the family */
	__u8 masq6_len;
	__u8 redirect;			/* 1: FIB lookup + redirect; 0: hand to the stack */
	__u8 pad;
};

/* Counters the tests read: which paths really ran. */
enum lb_stat {
	STAT_NAT_NEW,		/* a flow got its NAT entries */
	STAT_NAT_FWD,		/* client → backend, translated */
	STAT_NAT_REV,		/* backend → client, reverse-translated */
	STAT_ICMP_ERR_REV,	/* an ICMP error about forward traffic, RevNATed */
	STAT_ICMP_ERR_FWD,	/* an ICMP error from the client, translated */
	STAT_NO_ENTRY,		/* an ICMP error or reply without a NAT entry */
	STAT_NAT_FULL,		/* no free NAT port: dropped */
	STAT_REDIRECT,
	STAT_REDIRECT_NEIGH,
	STAT_TO_STACK,
	STAT_ERROR,		/* a helper failed: dropped */
	STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct svc_key);
	__type(value, struct svc_backend);
} services SEC(".maps");

struct nat_map {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct nat_tuple);
	__type(value, struct nat_tuple);
};

struct nat_map nat_fwd SEC(".maps");
struct nat_map nat_rev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* A parsed IP packet: where its headers are and its tuple. */
struct pkt {
	struct nat_tuple t;
	__u32 l3;		/* offset of the IP header */
	__u32 l4;		/* offset of the L4 header */
	__u32 end;		/* end of the IP packet (its length field) */
	__u8 icmp_type;		/* ICMP/ICMPv6 only */
	__u8 is_error;		/* an ICMP error: the tuple is the quote's job */
};

static __always_inline void count(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &stat);

	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline const struct lb_config *get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&config, &zero);
}

static __always_inline int is_v6(const struct nat_tuple *t)
{
	return t->family == 6;
}

static __always_inline void swap_tuple(const struct nat_tuple *in, struct nat_tuple *out)
{
	*out = *in;
	out->saddr = in->daddr;
	out->daddr = in->saddr;
	out->sport = in->dport;
	out->dport = in->sport;
}

static __always_inline int icmp_is_error(__u8 family, __u8 type)
{
	if (family == 4)
		return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED ||
		       type == ICMP_PARAMETERPROB;
	return type == ICMPV6_DEST_UNREACH || type == ICMPV6_PKT_TOOBIG ||
	       type == ICMPV6_TIME_EXCEED || type == ICMPV6_PARAMPROB;
}

static __always_inline int icmp_echo_request(__u8 family, __u8 type)
{
	return type == (family == 4 ? ICMP_ECHO : ICMPV6_ECHO_REQUEST);
}

static __always_inline int icmp_echo_reply(__u8 family, __u8 type)
{
	return type == (family == 4 ? ICMP_ECHOREPLY : ICMPV6_ECHO_REPLY);
}

/* Parse the IP header at @off (IPv4 or IPv6, by its version nibble). */
static __always_inline int parse_ip(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	__u8 first;

	__builtin_memset(p, 0, sizeof(*p));
	if (bpf_skb_load_bytes(skb, off, &first, 1))
		return -1;
	p->l3 = off;
	if (first >> 4 == 4) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) || ip.ihl < 5)
			return -1;
		if (ip.frag_off & bpf_htons(0x3fff))	/* MF or an offset: a fragment */
			return -1;
		p->t.family = 4;
		p->t.proto = ip.protocol;
		p->t.saddr.v4 = ip.saddr;
		p->t.daddr.v4 = ip.daddr;
		p->l4 = off + ip.ihl * 4;
		p->end = off + bpf_ntohs(ip.tot_len);
	} else if (first >> 4 == 6) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)))
			return -1;
		p->t.family = 6;
		p->t.proto = ip6.nexthdr;
		__builtin_memcpy(p->t.saddr.b, &ip6.saddr, 16);
		__builtin_memcpy(p->t.daddr.b, &ip6.daddr, 16);
		p->l4 = off + sizeof(ip6);
		p->end = p->l4 + bpf_ntohs(ip6.payload_len);
	} else {
		return -1;
	}
	if (p->end > skb->len)	/* a quote ends where the frame does */
		p->end = skb->len;
	return 0;
}

/* Fill the tuple's ports (TCP, UDP) or echo identifier; flag ICMP errors. */
static __always_inline int parse_l4(struct __sk_buff *skb, struct pkt *p)
{
	__u8 icmp_proto = p->t.family == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;

	if (p->t.proto == IPPROTO_TCP || p->t.proto == IPPROTO_UDP) {
		__be16 ports[2];

		if (bpf_skb_load_bytes(skb, p->l4, ports, sizeof(ports)))
			return -1;
		p->t.sport = ports[0];
		p->t.dport = ports[1];
		return 0;
	}
	if (p->t.proto == icmp_proto) {
		struct icmp_head icmp;

		if (bpf_skb_load_bytes(skb, p->l4, &icmp, sizeof(icmp)))
			return -1;
		p->icmp_type = icmp.type;
		if (icmp_is_error(p->t.family, icmp.type)) {
			p->is_error = 1;
			return 0;
		}
		if (icmp_echo_request(p->t.family, icmp.type))
			p->t.sport = icmp.id;
		else if (icmp_echo_reply(p->t.family, icmp.type))
			p->t.dport = icmp.id;
		else
			return -1;	/* NDP, router advertisements, ...: not ours */
		return 0;
	}
	return -1;
}

static __always_inline int parse(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	if (parse_ip(skb, off, p))
		return -1;
	return parse_l4(skb, p);
}

/* -- checksum bookkeeping ------------------------------------------------------ */

/* Where the L4 checksum is, and whether its sum includes the pseudo-header. */
static __always_inline __u32 l4_csum_offset(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return __builtin_offsetof(struct tcphdr, check);
	case IPPROTO_UDP:
		return __builtin_offsetof(struct udphdr, check);
	default:		/* ICMP and ICMPv6 */
		return 2;
	}
}

static __always_inline int has_pseudo_header(__u8 proto)
{
	return proto != IPPROTO_ICMP;
}

/* Sum of the address change from @from to @to (both addresses). */
static __always_inline __u32 addr_diff(const struct nat_tuple *from, const struct nat_tuple *to)
{
	__u32 diff;

	if (is_v6(from)) {
		diff = bpf_csum_diff((__be32 *)from->saddr.w, 16, (__be32 *)to->saddr.w, 16, 0);
		return bpf_csum_diff((__be32 *)from->daddr.w, 16, (__be32 *)to->daddr.w, 16, diff);
	}
	diff = bpf_csum_diff((__be32 *)&from->saddr.v4, 4, (__be32 *)&to->saddr.v4, 4, 0);
	return bpf_csum_diff((__be32 *)&from->daddr.v4, 4, (__be32 *)&to->daddr.v4, 4, diff);
}

/* Sum of the port (or echo identifier) change: sport and dport are one word. */
static __always_inline __u32 port_diff(const struct nat_tuple *from, const struct nat_tuple *to)
{
	return bpf_csum_diff((__be32 *)&from->sport, 4, (__be32 *)&to->sport, 4, 0);
}

static __always_inline int store_addrs(struct __sk_buff *skb, __u32 l3, const struct nat_tuple *to)
{
	if (is_v6(to)) {
		if (bpf_skb_store_bytes(skb, l3 + __builtin_offsetof(struct ipv6hdr, saddr),
					to->saddr.b, 16, 0))
			return -1;
		return bpf_skb_store_bytes(skb, l3 + __builtin_offsetof(struct ipv6hdr, daddr),
					   to->daddr.b, 16, 0);
	}
	if (bpf_skb_store_bytes(skb, l3 + __builtin_offsetof(struct iphdr, saddr),
				&to->saddr.v4, 4, 0))
		return -1;
	return bpf_skb_store_bytes(skb, l3 + __builtin_offsetof(struct iphdr, daddr),
				   &to->daddr.v4, 4, 0);
}

/* Where the identifier of an echo message goes, and which tuple half carries it. */
static __always_inline __be16 echo_id(const struct pkt *p, const struct nat_tuple *t)
{
	return icmp_echo_request(p->t.family, p->icmp_type) ? t->sport : t->dport;
}

static __always_inline int store_ports(struct __sk_buff *skb, const struct pkt *p,
				       const struct nat_tuple *to)
{
	if (p->t.proto == IPPROTO_TCP || p->t.proto == IPPROTO_UDP)
		return bpf_skb_store_bytes(skb, p->l4, &to->sport, 4, 0);
	{
		__be16 id = echo_id(p, to);

		return bpf_skb_store_bytes(skb, p->l4 + __builtin_offsetof(struct icmp_head, id),
					   &id, 2, 0);
	}
}

static __always_inline int load16(struct __sk_buff *skb, __u32 off, __u16 *v)
{
	return bpf_skb_load_bytes(skb, off, v, 2);
}

/* A checksum field over data that changed by @diff: load, RFC 1624, store. */
static __always_inline int fix_csum(struct __sk_buff *skb, __u32 off, __u32 diff, int udp)
{
	__u16 check;

	if (load16(skb, off, &check))
		return -1;
	check = csum_add_diff(check, diff);
	if (udp && !check)
		check = 0xffff;		/* a computed 0 is sent as all ones (RFC 768) */
	return bpf_skb_store_bytes(skb, off, &check, 2, 0);
}

/* -- ordinary packets ------------------------------------------------------------ */

/* Rewrite @p's addresses and ports to @to; the skb may be CHECKSUM_PARTIAL. */
static __always_inline int nat_rewrite(struct __sk_buff *skb, const struct pkt *p,
				       const struct nat_tuple *to)
{
	const struct nat_tuple *from = &p->t;
	__u32 csum_off = p->l4 + l4_csum_offset(from->proto);
	__u64 mangled0 = from->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__u32 addrs = addr_diff(from, to);

	if (store_addrs(skb, p->l3, to))
		return -1;
	if (!is_v6(from) &&
	    bpf_l3_csum_replace(skb, p->l3 + __builtin_offsetof(struct iphdr, check), 0, addrs, 0))
		return -1;
	if (has_pseudo_header(from->proto) &&
	    bpf_l4_csum_replace(skb, csum_off, 0, addrs, BPF_F_PSEUDO_HDR | mangled0))
		return -1;
	if (from->proto == IPPROTO_TCP || from->proto == IPPROTO_UDP) {
		if (store_ports(skb, p, to))
			return -1;
		if (bpf_l4_csum_replace(skb, csum_off, from->sport, to->sport, 2 | mangled0) ||
		    bpf_l4_csum_replace(skb, csum_off, from->dport, to->dport, 2 | mangled0))
			return -1;
		return 0;
	}
	if (store_ports(skb, p, to))
		return -1;
	return bpf_l4_csum_replace(skb, csum_off, echo_id(p, from), echo_id(p, to), 2);
}

/* -- ICMP errors ---------------------------------------------------------------- */

/* Does the quote hold the quoted packet's L4 checksum (and is it in use)? */
static __always_inline int quote_has_l4_csum(struct __sk_buff *skb, const struct pkt *q)
{
	__u32 field = q->l4 + l4_csum_offset(q->t.proto);
	__u16 check;

	/* E.g. RFC 792's 8 bytes of a TCP header. A quote that ends inside the field
	 * keeps its lone byte as it is: the new value needs the missing byte's carry. */
	if (field + 2 > q->end)
		return 0;
	if (q->t.proto != IPPROTO_UDP)
		return 1;
	if (load16(skb, field, &check))
		return 0;
	return check != 0;		/* UDP checksum 0: the sender computed none */
}

/* Rewrite an ICMP error: the outer addresses to @outer_to, the quoted packet @q
 * to @quote_to, and every checksum on the way (see the header comment). */
static __always_inline int rewrite_icmp_error(struct __sk_buff *skb, const struct pkt *outer,
					      const struct nat_tuple *outer_to,
					      const struct pkt *q, const struct nat_tuple *quote_to)
{
	int v6 = is_v6(&q->t);
	__u32 addrs = addr_diff(&q->t, quote_to);
	__u32 ports = port_diff(&q->t, quote_to);
	__u32 outer_addrs = addr_diff(&outer->t, outer_to);
	int l4_csum = quote_has_l4_csum(skb, q);
	__u32 l4_change = csum_add32(has_pseudo_header(q->t.proto) ? addrs : 0, ports);
	__u32 quote_change = ports;	/* what the quoted bytes add up to change by */
	__u32 icmp_change;

	/* The quoted packet, as the client sent it (or as the backend did). */
	if (store_addrs(skb, q->l3, quote_to) || store_ports(skb, q, quote_to))
		return -1;
	if (v6)
		quote_change = csum_add32(quote_change, addrs);	/* no header checksum */
	else if (fix_csum(skb, q->l3 + __builtin_offsetof(struct iphdr, check), addrs, 0))
		return -1;	/* the quoted IPv4 checksum absorbs the address change */
	if (l4_csum) {
		if (fix_csum(skb, q->l4 + l4_csum_offset(q->t.proto), l4_change,
			     q->t.proto == IPPROTO_UDP))
			return -1;
		/* ... and that field's own change is part of the quoted bytes */
		quote_change = csum_add32(quote_change, csum_neg32(l4_change));
	}

	/* The outer header. */
	if (store_addrs(skb, outer->l3, outer_to))
		return -1;
	if (!v6 && fix_csum(skb, outer->l3 + __builtin_offsetof(struct iphdr, check),
			    outer_addrs, 0))
		return -1;
#ifdef VARIANT_PREFIX
	/* Known-bad (before PR 43196): the ICMP checksum ignores the quoted changes. */
	icmp_change = v6 ? outer_addrs : 0;
#else
	icmp_change = v6 ? csum_add32(outer_addrs, quote_change) : quote_change;
#endif
	return fix_csum(skb, outer->l4 + 2, icmp_change, 0);
}

/* The packet an ICMP error quotes: IP header and at least 8 bytes of L4. */
static __always_inline int parse_quote(struct __sk_buff *skb, const struct pkt *outer,
				       struct pkt *q)
{
	__u32 end = outer->end;

	if (parse_ip(skb, outer->l4 + 8, q) || q->t.family != outer->t.family)
		return -1;
	if (q->end > end)
		q->end = end;
	if (q->l4 + 8 > q->end || parse_l4(skb, q) || q->is_error)
		return -1;
	return 0;
}

/* -- forwarding ------------------------------------------------------------------- */

static __always_inline int decrement_ttl(struct __sk_buff *skb, const struct pkt *p)
{
	if (is_v6(&p->t)) {
		__u8 hops;
		__u32 off = p->l3 + __builtin_offsetof(struct ipv6hdr, hop_limit);

		if (bpf_skb_load_bytes(skb, off, &hops, 1) || hops <= 1)
			return -1;
		hops--;
		return bpf_skb_store_bytes(skb, off, &hops, 1, 0);
	}
	{
		__u32 off = p->l3 + __builtin_offsetof(struct iphdr, ttl);
		__be16 old, new;	/* TTL is the high byte of the word it shares with protocol */

		if (bpf_skb_load_bytes(skb, off, &old, 2) || *(__u8 *)&old <= 1)
			return -1;
		new = bpf_htons(bpf_ntohs(old) - 0x100);
		return ipv4_store16(skb, p->l3, __builtin_offsetof(struct iphdr, ttl), old, new);
	}
}

static __always_inline int to_stack(void)
{
	count(STAT_TO_STACK);
	return TC_ACT_OK;
}

/* Send the translated packet on: FIB lookup and redirect, or the stack. */
static __always_inline int forward(struct __sk_buff *skb, const struct pkt *p,
				   const struct nat_tuple *now)
{
	const struct lb_config *cfg = get_config();
	struct bpf_fib_lookup fib = {};
	long rc;

	if (!cfg || !cfg->redirect)
		return to_stack();
	fib.ifindex = skb->ingress_ifindex;
	fib.l4_protocol = now->proto;
	if (is_v6(now)) {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, now->saddr.w, 16);
		__builtin_memcpy(fib.ipv6_dst, now->daddr.w, 16);
	} else {
		fib.family = AF_INET;
		fib.ipv4_src = now->saddr.v4;
		fib.ipv4_dst = now->daddr.v4;
	}
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return to_stack();	/* local, unreachable, too big, TTL: the stack knows */
	if (decrement_ttl(skb, p))
		return to_stack();	/* expiring: the stack sends time-exceeded */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = { .nh_family = fib.family };

		__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, 16);	/* the next hop, either family */
		count(STAT_REDIRECT_NEIGH);
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0)) {
		count(STAT_ERROR);
		return TC_ACT_SHOT;
	}
	count(STAT_REDIRECT);
	return bpf_redirect(fib.ifindex, 0);
}

static __always_inline int dropped(void)
{
	count(STAT_ERROR);
	return TC_ACT_SHOT;
}

/* -- new flows ------------------------------------------------------------------------ */

static __always_inline int prefix_match(const union lb_addr *addr, const union lb_addr *prefix,
					__u8 len, int words)
{
	int i;

	if (len == 0xff)
		return 0;
	for (i = 0; i < 4; i++) {
		__u32 bits = len > 32 * i ? len - 32 * i : 0;
		__u32 mask = bits >= 32 ? 0xffffffff : bits ? ~(0xffffffffu >> bits) : 0;

		if (i >= words)
			break;
		if ((bpf_ntohl(addr->w[i]) ^ bpf_ntohl(prefix->w[i])) & mask)
			return 0;
	}
	return 1;
}

/* Where a new flow from the client goes: a service's backend, the destination
 * itself when masquerading it, or nowhere (not ours). */
static __always_inline int pick_destination(const struct nat_tuple *t, const struct lb_config *cfg,
					    struct svc_backend *be)
{
	struct svc_key key = { .vip = t->daddr, .port = t->dport, .proto = t->proto,
			       .family = t->family };
	struct svc_backend *found;

	if (t->proto != IPPROTO_TCP && t->proto != IPPROTO_UDP)
		key.port = 0;		/* echo: the service is the address alone */
	found = bpf_map_lookup_elem(&services, &key);
	if (found) {
		*be = *found;
		return 0;
	}
	if (is_v6(t) ? prefix_match(&t->daddr, &cfg->masq6, cfg->masq6_len, 4)
		     : prefix_match(&t->daddr, &cfg->masq4, cfg->masq4_len, 1)) {
		be->addr = t->daddr;
		be->port = t->dport;
		return 0;
	}
	return -1;
}

/* Create both NAT entries for the client's tuple @orig; the translated tuple in @out. */
static __always_inline int nat_create(const struct nat_tuple *orig, struct nat_tuple *out)
{
	const struct lb_config *cfg = get_config();
	struct nat_tuple rev_key, rev_val, *raced;
	struct svc_backend be = {};
	__u32 range, start, i;
	int echo;

	if (!cfg || pick_destination(orig, cfg, &be))
		return 1;	/* not ours */
	echo = orig->proto != IPPROTO_TCP && orig->proto != IPPROTO_UDP;
	*out = *orig;
	out->saddr = is_v6(orig) ? cfg->node6 : cfg->node4;
	out->daddr = be.addr;
	out->dport = echo ? 0 : be.port;
	swap_tuple(orig, &rev_val);
	if (cfg->nat_port_max < cfg->nat_port_min)
		return -1;
	range = (__u32)cfg->nat_port_max - cfg->nat_port_min + 1;
	start = bpf_get_prandom_u32();
	for (i = 0; i < NAT_RETRIES; i++) {
		__be16 port = bpf_htons(cfg->nat_port_min + (start + i) % range);

		out->sport = port;
		swap_tuple(out, &rev_key);
		if (bpf_map_update_elem(&nat_rev, &rev_key, &rev_val, BPF_NOEXIST))
			continue;	/* the port is taken */
		if (!bpf_map_update_elem(&nat_fwd, orig, out, BPF_NOEXIST)) {
			count(STAT_NAT_NEW);
			return 0;
		}
		/* Another CPU created this flow meanwhile: use its entry. */
		bpf_map_delete_elem(&nat_rev, &rev_key);
		raced = bpf_map_lookup_elem(&nat_fwd, orig);
		if (!raced)
			return -1;
		*out = *raced;
		return 0;
	}
	count(STAT_NAT_FULL);
	return -1;
}

/* -- the two hooks -------------------------------------------------------------------- */

/* An ICMP error from the client about reply traffic: it quotes VIP→client, whose
 * swap is the client's flow in nat_fwd; out it goes as the backend's peer expects. */
static __always_inline int icmp_error_from_client(struct __sk_buff *skb, const struct pkt *outer)
{
	struct nat_tuple key, fwd, quote_to, outer_to;
	struct nat_tuple *found;
	struct pkt q;

	if (parse_quote(skb, outer, &q))
		return TC_ACT_OK;
	swap_tuple(&q.t, &key);
	found = bpf_map_lookup_elem(&nat_fwd, &key);
	if (!found) {
		count(STAT_NO_ENTRY);
		return TC_ACT_OK;
	}
	fwd = *found;
	swap_tuple(&fwd, &quote_to);		/* backend:port → node:natport */
	outer_to = outer->t;
	outer_to.saddr = fwd.saddr;		/* from the node IP ... */
	outer_to.daddr = fwd.daddr;		/* ... to the backend */
	if (rewrite_icmp_error(skb, outer, &outer_to, &q, &quote_to))
		return dropped();
	count(STAT_ICMP_ERR_FWD);
	return forward(skb, outer, &outer_to);
}

/* An ICMP error about forward traffic: it quotes node→backend, whose swap is the
 * reply tuple in nat_rev. The outer source stays: any router may send errors. */
static __always_inline int icmp_error_to_client(struct __sk_buff *skb, const struct pkt *outer)
{
	struct nat_tuple key, rev, quote_to, outer_to;
	struct nat_tuple *found;
	struct pkt q;

	if (parse_quote(skb, outer, &q))
		return TC_ACT_OK;
	swap_tuple(&q.t, &key);
	found = bpf_map_lookup_elem(&nat_rev, &key);
	if (!found) {
		count(STAT_NO_ENTRY);
		return TC_ACT_OK;
	}
	rev = *found;
	swap_tuple(&rev, &quote_to);		/* client:port → VIP:port */
	outer_to = outer->t;
	outer_to.daddr = rev.daddr;		/* the client */
	if (rewrite_icmp_error(skb, outer, &outer_to, &q, &quote_to))
		return dropped();
	count(STAT_ICMP_ERR_REV);
	return forward(skb, outer, &outer_to);
}

SEC("tc")
int lb_from_client(struct __sk_buff *skb)
{
	struct nat_tuple to, *found;
	struct pkt p;
	int ret;

	if (parse(skb, ETH_HLEN, &p))
		return TC_ACT_OK;
	if (p.is_error)
		return icmp_error_from_client(skb, &p);
	if (p.t.proto == (is_v6(&p.t) ? IPPROTO_ICMPV6 : IPPROTO_ICMP) &&
	    !icmp_echo_request(p.t.family, p.icmp_type))
		return TC_ACT_OK;	/* an echo reply from the client: no flow of ours */
	found = bpf_map_lookup_elem(&nat_fwd, &p.t);
	if (found) {
		to = *found;
	} else {
		ret = nat_create(&p.t, &to);
		if (ret > 0)
			return TC_ACT_OK;
		if (ret < 0)
			return TC_ACT_SHOT;
	}
	if (nat_rewrite(skb, &p, &to))
		return dropped();
	count(STAT_NAT_FWD);
	return forward(skb, &p, &to);
}

SEC("tc")
int lb_from_backend(struct __sk_buff *skb)
{
	struct nat_tuple to, *found;
	struct pkt p;

	if (parse(skb, ETH_HLEN, &p))
		return TC_ACT_OK;
	if (p.is_error)
		return icmp_error_to_client(skb, &p);
	found = bpf_map_lookup_elem(&nat_rev, &p.t);
	if (!found)
		return TC_ACT_OK;	/* to the node itself, or not NATed by us */
	to = *found;
	if (nat_rewrite(skb, &p, &to))
		return dropped();
	count(STAT_NAT_REV);
	return forward(skb, &p, &to);
}

char LICENSE[] SEC("license") = "GPL";
