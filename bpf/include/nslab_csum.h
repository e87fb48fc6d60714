/* SPDX-License-Identifier: GPL-2.0 */
/* Internet checksum helpers shared by the lab's BPF programs.
 *
 * One's-complement sums do not care about byte order (RFC 1071 §2.B), so the
 * helpers take header words exactly as they sit in the packet.
 */
#ifndef NSLAB_CSUM_H
#define NSLAB_CSUM_H

#include <linux/bpf.h>
#include <linux/ip.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* Fold a 32-bit one's-complement sum (e.g. from bpf_csum_diff()) to 16 bits. */
static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').  RFC 1141's HC + m - m' gets the
 * corner case where the sum is 0xffff wrong; this form gets it right for any
 * header (it yields 0x0000 only for all-zero data, which no IP header is). */
static __always_inline __sum16 csum_replace16(__sum16 check, __be16 old, __be16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + (__u16)new;

	return (__sum16)~csum_fold32(sum);
}

/* The same for a 32-bit field (an IPv4 address): two 16-bit words. */
static __always_inline __sum16 csum_replace32(__sum16 check, __be32 old, __be32 new)
{
	__u32 sum = (__u16)~check;

	sum += (__u16)~(old >> 16) + (__u16)~(old & 0xffff);
	sum += (new >> 16) + (new & 0xffff);
	return (__sum16)~csum_fold32(sum);
}

/* One's-complement addition of two 32-bit sums (end-around carry): e.g. two
 * bpf_csum_diff() results. */
static __always_inline __u32 csum_add32(__u32 a, __u32 b)
{
	__u32 sum = a + b;

	return sum + (sum < a);
}

/* One's-complement negation of a 32-bit sum: ~x is -x modulo 0xffff too. */
static __always_inline __u32 csum_neg32(__u32 a)
{
	return ~a;
}

/* The checksum @check of data whose sum changed by @diff (a 32-bit
 * one's-complement sum, e.g. from bpf_csum_diff()): RFC 1624 eqn. 3,
 * HC' = ~(~HC + diff). Words as they sit in the packet, like the others. */
static __always_inline __sum16 csum_add_diff(__sum16 check, __u32 diff)
{
	return (__sum16)~csum_fold32(csum_add32((__u16)~check, diff));
}

/* tc: store a 16-bit word of the IPv4 header that starts at @ip_off and fold
 * the change into the header checksum, as the kernel's own datapath would. */
static __always_inline long ipv4_store16(struct __sk_buff *skb, __u32 ip_off, __u32 field_off,
					 __be16 old, __be16 new)
{
	long err = bpf_skb_store_bytes(skb, ip_off + field_off, &new, sizeof(new), 0);

	if (err)
		return err;
	return bpf_l3_csum_replace(skb, ip_off + __builtin_offsetof(struct iphdr, check),
				   old, new, sizeof(new));
}

#endif /* NSLAB_CSUM_H */
