/* KNOWN BAD: xdp_echo.c without its ICMP checksum update, as the series' first
 * article had it: the type changes, the checksum does not. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/icmp.h>
#include <arpa/inet.h>
static __always_inline __u16 csum_fold(__u32 csum)
{
// Add the upper 16 bits to the lower 16 bits
csum = (csum & 0xffff) + (csum >> 16);
// Add the carry-over once more
csum = (csum & 0xffff) + (csum >> 16);
// Take the one's complement and return the final checksum
return (__u16)~csum;
}
static __always_inline void swap_eth_addr(__u8 *a, __u8 *b)
{
__u8 tmp[ETH_ALEN];
__builtin_memcpy(tmp, a, ETH_ALEN);
__builtin_memcpy(a, b, ETH_ALEN);
__builtin_memcpy(b, tmp, ETH_ALEN);
}
static __always_inline void swap_ip_addr(__u32 *a, __u32 *b)
{
__u32 tmp = *a;
*a = *b;
*b = tmp;
}
SEC("xdp")
int xdp_echo_reply(struct xdp_md *ctx)
{
void *data_end = (void *)(unsigned long)ctx->data_end;
void *data = (void *)(unsigned long)ctx->data;
// Get pointer to Ethernet header
struct ethhdr *eth = data;
if ((void *)eth + sizeof(*eth) > data_end)
return XDP_PASS;
// Check if the Ethernet frame contains an IP packet
if (eth->h_proto != htons(ETH_P_IP))
return XDP_PASS;
// Get pointer to IP header
struct iphdr *ip = data + sizeof(*eth);
if ((void *)ip + sizeof(*ip) > data_end)
return XDP_PASS;
// Check if the protocol is ICMP
if (ip->protocol != IPPROTO_ICMP)
return XDP_PASS;
// Get pointer to ICMP header
struct icmphdr *icmp = (void *)ip + sizeof(*ip);
if ((void *)icmp + sizeof(*icmp) > data_end)
return XDP_PASS;
// Pass packets except ICMP Echo Requests
if (icmp->type != ICMP_ECHO)
return XDP_PASS;
// Make a copy of the IP header
struct iphdr ip_before = *ip;
// Swap source and destination MAC addresses
swap_eth_addr(eth->h_dest, eth->h_source);
// Swap source and destination IP addresses
swap_ip_addr(&ip->saddr, &ip->daddr);
// Change type to ICMP Echo Reply (the checksum is left as it was)
icmp->type = ICMP_ECHOREPLY;
// IP header checksum
ip->check = 0;
__s64 value = bpf_csum_diff((void *)&ip_before, sizeof(ip_before), (void *)ip, sizeof(*ip), 0);
if (value >= 0)
ip->check = csum_fold(value);
// Drop the ICMP Echo Request packet
// return XDP_DROP;
return XDP_TX;
}
char _license[] SEC("license") = "MIT";
