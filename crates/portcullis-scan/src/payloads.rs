//! Protocol payloads for UDP probes, so that services that ignore an empty datagram still
//! answer (refguide `-sU`). The bytes are the first probe nmap 7.93's `nmap-payloads`
//! lists for each port: standard protocol requests (DNS status, NTP client, NetBIOS node
//! status, SNMP get with community "public", RPC null call, SSDP M-SEARCH, ...).

/// The payload sent to UDP `port`; empty for ports without a known protocol probe.
pub fn udp_payload(port: u16) -> &'static [u8] {
    match port {
        7 => b"\r\n\r\n",
        53 | 69 | 5353 | 26198 => b"\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        111 => {
            b"\x72\xFE\x1D\x13\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01\x86\xA0\
              \x00\x01\x97\x7C\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
              \x00\x00\x00\x00\x00\x00\x00\x00"
        }
        123 => {
            b"\xE3\x00\x04\xFA\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\
              \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
              \x00\x00\x00\x00\x00\x00\x00\x00\xC5\x4F\x23\x4B\x71\xB1\x52\xF3"
        }
        137 => {
            b"\x80\xF0\x00\x10\x00\x01\x00\x00\x00\x00\x00\x00\
              \x20CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\x00\x00\x21\x00\x01"
        }
        161 | 260 | 3401 => {
            b"\x30\x3A\x02\x01\x03\x30\x0F\x02\x02\x4A\x69\x02\x03\x00\xFF\xE3\
              \x04\x01\x04\x02\x01\x03\x04\x10\x30\x0E\x04\x00\x02\x01\x00\x02\
              \x01\x00\x04\x00\x04\x00\x04\x00\x30\x12\x04\x00\x04\x00\xA0\x0C\
              \x02\x02\x37\xF0\x02\x01\x00\x02\x01\x00\x30\x00"
        }
        177 => b"\x00\x01\x00\x02\x00\x01\x00",
        1900 => {
            b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\
              MAN: \"ssdp:discover\"\r\nMX: 5\r\nST: ssdp:all\r\n\r\n"
        }
        3478 => b"\x00\x01\x00\x00\x21\x12\xa4\x42\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        _ => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::udp_payload;

    #[test]
    fn common_ports_have_payloads() {
        assert_eq!(udp_payload(53).len(), 12);
        assert_eq!(udp_payload(123).len(), 48);
        assert_eq!(udp_payload(137).len(), 50);
        assert_eq!(udp_payload(161).len(), 60);
        assert!(udp_payload(9).is_empty());
    }
}
