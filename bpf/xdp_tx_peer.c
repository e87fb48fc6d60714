// SPDX-License-Identifier: GPL-2.0
/* The program nslab attaches to the peer of a veth end that runs native XDP.
 *
 * A veth delivers frames sent with XDP_TX (or redirected into it) only when
 * the receiving peer runs NAPI, which a native XDP program turns on; without
 * one, veth_xdp_xmit() drops every frame and counts it nowhere visible. This
 * program passes everything on to the stack: it only makes the peer able to
 * receive.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_tx_peer(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
