//! What kind of network an IP address belongs to: one classification for the SSRF guard of
//! the live providers (which refuses every non-public class) and for the `is_private_host` /
//! `url().is_private` script helpers (which call a subset of them private).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The class of a non-public address, or `None` for a public one.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4).map(|_| "IPv4-mapped non-public");
            }
            classify_v6(v6)
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if o == [169, 254, 169, 254] || o == [100, 100, 100, 200] {
        Some("cloud metadata")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_private() {
        Some("private")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("carrier-grade NAT")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignment")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking")
    } else if ip.is_multicast() || o[0] >= 240 || ip.is_broadcast() {
        Some("multicast or reserved")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("cloud metadata")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("unique-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        Some("documentation")
    } else if s[0] == 0x64 && s[1] == 0xff9b && (s[2] == 1 || s[2..6] == [0, 0, 0, 0]) {
        // NAT64 (well-known 64:ff9b::/96 and local-use 64:ff9b:1::/48): the embedded IPv4
        // address decides.
        classify_v4(embedded(s[6], s[7])).map(|_| "NAT64 non-public")
    } else if s[0] == 0x2002 {
        // 6to4 embeds an IPv4 address in bits 16..48.
        classify_v4(embedded(s[1], s[2])).map(|_| "6to4 non-public")
    } else if s[0] == 0x2001 && s[1] == 0 {
        Some("Teredo")
    } else if s[..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated) addresses embed an IPv4 address too.
        Some("IPv4-compatible")
    } else if (s[0] & 0xe000) != 0x2000 {
        // Outside global unicast (2000::/3): site-local fec0::/10, IPv4-translated and every
        // other reserved block.
        Some("reserved")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every class with both ends of its range, and the addresses just outside them.
    const TABLE: &[(&str, Option<&str>)] = &[
        // 0.0.0.0/8 "this network"
        ("0.0.0.0", Some("unspecified")),
        ("0.255.255.255", Some("unspecified")),
        ("1.0.0.0", None),
        // 10.0.0.0/8
        ("9.255.255.255", None),
        ("10.0.0.0", Some("private")),
        ("10.255.255.255", Some("private")),
        ("11.0.0.0", None),
        // 100.64.0.0/10 carrier-grade NAT
        ("100.63.255.255", None),
        ("100.64.0.0", Some("carrier-grade NAT")),
        ("100.127.255.255", Some("carrier-grade NAT")),
        ("100.128.0.0", None),
        // 127.0.0.0/8
        ("126.255.255.255", None),
        ("127.0.0.0", Some("loopback")),
        ("127.255.255.255", Some("loopback")),
        ("128.0.0.0", None),
        // 169.254.0.0/16 link-local, with the metadata address inside it
        ("169.253.255.255", None),
        ("169.254.0.0", Some("link-local")),
        ("169.254.169.253", Some("link-local")),
        ("169.254.169.254", Some("cloud metadata")),
        ("169.254.169.255", Some("link-local")),
        ("169.254.255.255", Some("link-local")),
        ("169.255.0.0", None),
        ("100.100.100.200", Some("cloud metadata")),
        // 172.16.0.0/12
        ("172.15.255.255", None),
        ("172.16.0.0", Some("private")),
        ("172.31.255.255", Some("private")),
        ("172.32.0.0", None),
        // 192.0.0.0/24 IETF protocol assignments, 192.0.2.0/24 documentation
        ("191.255.255.255", None),
        ("192.0.0.0", Some("IETF protocol assignment")),
        ("192.0.0.255", Some("IETF protocol assignment")),
        ("192.0.1.0", None),
        ("192.0.1.255", None),
        ("192.0.2.0", Some("documentation")),
        ("192.0.2.255", Some("documentation")),
        ("192.0.3.0", None),
        // 192.168.0.0/16
        ("192.167.255.255", None),
        ("192.168.0.0", Some("private")),
        ("192.168.255.255", Some("private")),
        ("192.169.0.0", None),
        // 198.18.0.0/15 benchmarking, 198.51.100.0/24 documentation
        ("198.17.255.255", None),
        ("198.18.0.0", Some("benchmarking")),
        ("198.19.255.255", Some("benchmarking")),
        ("198.20.0.0", None),
        ("198.51.99.255", None),
        ("198.51.100.0", Some("documentation")),
        ("198.51.100.255", Some("documentation")),
        ("198.51.101.0", None),
        // 203.0.113.0/24 documentation
        ("203.0.112.255", None),
        ("203.0.113.0", Some("documentation")),
        ("203.0.113.255", Some("documentation")),
        ("203.0.114.0", None),
        // 224.0.0.0/4 multicast, 240.0.0.0/4 reserved, the broadcast address
        ("223.255.255.255", None),
        ("224.0.0.0", Some("multicast or reserved")),
        ("239.255.255.255", Some("multicast or reserved")),
        ("240.0.0.0", Some("multicast or reserved")),
        ("255.255.255.254", Some("multicast or reserved")),
        ("255.255.255.255", Some("multicast or reserved")),
        // IPv6
        ("::", Some("unspecified")),
        ("::1", Some("loopback")),
        ("::2", Some("IPv4-compatible")),
        ("fd00:ec2::254", Some("cloud metadata")),
        ("fd00:ec2::253", Some("unique-local")),
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved")),
        ("fc00::", Some("unique-local")),
        (
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("unique-local"),
        ),
        ("fe00::", Some("reserved")),
        ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved")),
        ("fe80::", Some("link-local")),
        (
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("link-local"),
        ),
        ("fec0::1", Some("reserved")),
        ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved")),
        ("ff00::", Some("multicast")),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("multicast")),
        ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved")),
        ("2000::", None),
        ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("4000::", Some("reserved")),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2001:db8::", Some("documentation")),
        (
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("documentation"),
        ),
        ("2001:db9::", None),
        ("2001::", Some("Teredo")),
        ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", Some("Teredo")),
        ("2001:1::", None),
        ("2606:4700::1111", None),
        // IPv4 embedded in IPv6: mapped, compatible, NAT64, 6to4
        ("::ffff:0.0.0.0", Some("IPv4-mapped non-public")),
        ("::ffff:0.255.255.255", Some("IPv4-mapped non-public")),
        ("::ffff:1.0.0.0", None),
        ("::ffff:127.0.0.1", Some("IPv4-mapped non-public")),
        ("::ffff:169.254.169.254", Some("IPv4-mapped non-public")),
        ("::ffff:239.255.255.255", Some("IPv4-mapped non-public")),
        ("::ffff:240.0.0.0", Some("IPv4-mapped non-public")),
        ("::ffff:8.8.8.8", None),
        ("::ffff:0:8.8.8.8", Some("reserved")),
        ("::8.8.8.8", Some("IPv4-compatible")),
        ("::127.0.0.1", Some("IPv4-compatible")),
        ("64:ff9b::8.8.8.8", None),
        ("64:ff9b::10.0.0.1", Some("NAT64 non-public")),
        ("64:ff9b::0.0.0.0", Some("NAT64 non-public")),
        ("64:ff9b::240.0.0.0", Some("NAT64 non-public")),
        ("64:ff9b::169.254.169.254", Some("NAT64 non-public")),
        ("64:ff9b:1::127.0.0.1", Some("NAT64 non-public")),
        ("64:ff9b:1::8.8.8.8", None),
        ("64:ff9b:2::8.8.8.8", Some("reserved")),
        ("2002:0808:0808::", None),
        ("2002:7f00:0001::", Some("6to4 non-public")),
        ("2002:a9fe:a9fe::1", Some("6to4 non-public")),
        ("2002:f000:0000::", Some("6to4 non-public")),
    ];

    #[test]
    fn every_class_with_both_boundaries() {
        let mut wrong = Vec::new();
        for (text, want) in TABLE {
            let ip: IpAddr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            let got = classify(ip);
            if got != *want {
                wrong.push(format!("{text}: got {got:?}, want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
