// SPDX-License-Identifier: GPL-2.0
/* Probes of kernel behaviour that changes between releases and that datapath
 * code depends on (not a scenario: see topologies/scenarios/kernel_behaviour.py).
 *
 * csum_diff_probe  returns bpf_csum_diff() over two fixed 32-bit words. Since
 *                  6.13 ("bpf: bpf_csum_diff: optimize and homogenize for all
 *                  archs") the helper returns a sum folded to 16 bits; before,
 *                  on x86, the unfolded 32-bit one's complement sum. A program
 *                  that forgets to fold is only caught on the older kernels.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int csum_diff_probe(struct __sk_buff *skb)
{
	__be32 words[2] = { 0x12345678, 0x9abcdef0 };

	return (int)bpf_csum_diff(0, 0, words, sizeof(words), 0);
}

char _license[] SEC("license") = "GPL";
