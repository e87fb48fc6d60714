// SPDX-License-Identifier: GPL-2.0
/* The drop-reason monitor (not a scenario: see topologies/capture/drop_reasons.py).
 *
 * on_kfree_skb  a raw tracepoint on kfree_skb, whose arguments have kept their
 *               order since the reason joined them in 5.17: (skb, location,
 *               reason[, rx_sk]). Counts every freed skb by (reason, location)
 *               in the drops map, machine-wide; user space names both (the
 *               tracepoint format's reason table, /proc/kallsyms).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct drop_key {
	__u32 reason;
	__u32 pad;
	__u64 location;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct drop_key);
	__type(value, __u64);
} drops SEC(".maps");

SEC("raw_tracepoint/kfree_skb")
int on_kfree_skb(struct bpf_raw_tracepoint_args *ctx)
{
	struct drop_key key = {
		.reason = (__u32)ctx->args[2],
		.location = ctx->args[1],
	};
	__u64 one = 1, *count;

	count = bpf_map_lookup_elem(&drops, &key);
	if (count) {
		__sync_fetch_and_add(count, 1);
		return 0;
	}
	/* Another CPU may insert the same key first: then add to its entry. */
	if (bpf_map_update_elem(&drops, &key, &one, BPF_NOEXIST)) {
		count = bpf_map_lookup_elem(&drops, &key);
		if (count)
			__sync_fetch_and_add(count, 1);
	}
	return 0;
}

char _license[] SEC("license") = "GPL";
