//! The decoder on rules encoded here the way iptables-nft 1.8.9 encodes them (the forms
//! `nft --debug=netlink` shows for the kube-proxy ruleset), and on every corruption of
//! them: a wrong or truncated kernel message is an error, never a panic.
//! (`tests/nft_read.rs` holds the decoder to the real `iptables-nft-save`.)

use proptest::prelude::*;

use super::{NftReadError, decode_rule};

fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(4 + payload.len()).expect("small");
    let mut out = Vec::new();
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(payload);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out
}

fn nest(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    attr(ty | 0x8000, &parts.concat())
}

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn cstr(v: &str) -> Vec<u8> {
    let mut b = v.as_bytes().to_vec();
    b.push(0);
    b
}

fn expr(name: &str, data: &[Vec<u8>]) -> Vec<u8> {
    nest(1, &[attr(1, &cstr(name)), nest(2, data)])
}

fn meta(key: u32) -> Vec<u8> {
    expr("meta", &[attr(1, &be32(1)), attr(2, &be32(key))])
}

fn payload(base: u32, offset: u32, len: u32) -> Vec<u8> {
    expr(
        "payload",
        &[attr(1, &be32(1)), attr(2, &be32(base)), attr(3, &be32(offset)), attr(4, &be32(len))],
    )
}

fn cmp(op: u32, v: &[u8]) -> Vec<u8> {
    expr("cmp", &[attr(1, &be32(1)), attr(2, &be32(op)), nest(3, &[attr(1, v)])])
}

fn bitwise(mask: &[u8]) -> Vec<u8> {
    let len = u32::try_from(mask.len()).expect("small");
    let xor = vec![0; mask.len()];
    expr(
        "bitwise",
        &[
            attr(1, &be32(1)),
            attr(2, &be32(1)),
            attr(3, &be32(len)),
            nest(4, &[attr(1, mask)]),
            nest(5, &[attr(1, &xor)]),
        ],
    )
}

fn range(op: u32, from: u16, to: u16) -> Vec<u8> {
    expr(
        "range",
        &[
            attr(1, &be32(1)),
            attr(2, &be32(op)),
            nest(3, &[attr(1, &from.to_be_bytes())]),
            nest(4, &[attr(1, &to.to_be_bytes())]),
        ],
    )
}

fn counter() -> Vec<u8> {
    expr("counter", &[attr(1, &[0; 8]), attr(2, &[0; 8])])
}

fn verdict(code: i32, chain: Option<&str>) -> Vec<u8> {
    let mut v = vec![attr(1, &code.to_be_bytes())];
    if let Some(c) = chain {
        v.push(attr(2, &cstr(c)));
    }
    expr("immediate", &[attr(1, &be32(0)), nest(2, &[nest(2, &v)])])
}

fn xt(kind: &str, name: &str, rev: u32, info: &[u8]) -> Vec<u8> {
    let mut info = info.to_vec();
    while !info.len().is_multiple_of(8) {
        info.push(0);
    }
    expr(kind, &[attr(1, &cstr(name)), attr(2, &be32(rev)), attr(3, &info)])
}

fn comment(text: &str) -> Vec<u8> {
    let mut info = text.as_bytes().to_vec();
    info.resize(256, 0);
    xt("match", "comment", 0, &info)
}

fn statistic(probability: u32) -> Vec<u8> {
    let mut info = vec![0u8; 24];
    info[4..8].copy_from_slice(&probability.to_ne_bytes());
    xt("match", "statistic", 0, &info)
}

fn dnat(addr: [u8; 4], port: u16) -> Vec<u8> {
    let mut info = vec![0u8; 44];
    info[0..4].copy_from_slice(&3u32.to_ne_bytes()); // MAP_IPS | PROTO_SPECIFIED
    info[4..8].copy_from_slice(&addr);
    info[20..24].copy_from_slice(&addr);
    info[36..38].copy_from_slice(&port.to_be_bytes());
    info[38..40].copy_from_slice(&port.to_be_bytes());
    xt("target", "DNAT", 2, &info)
}

fn decode(exprs: &[Vec<u8>]) -> Result<String, NftReadError> {
    let mut line = String::from("-A C");
    decode_rule(&exprs.concat(), &mut line)?;
    Ok(line)
}

/// Rules as iptables-nft 1.8.9 writes them, with what `iptables-nft-save` prints.
fn templates() -> Vec<(Vec<Vec<u8>>, &'static str)> {
    vec![
        (
            vec![
                meta(16),
                cmp(0, &[6]),
                payload(1, 12, 2),
                cmp(1, &[198, 19]),
                payload(1, 16, 4),
                cmp(0, &[198, 18, 0, 1]),
                comment("ns0/svc0:http cluster IP"),
                payload(2, 2, 2),
                cmp(0, &1024u16.to_be_bytes()),
                counter(),
                verdict(-3, Some("KUBE-MARK-MASQ")),
            ],
            "-A C ! -s 198.19.0.0/16 -d 198.18.0.1/32 -p tcp -m comment --comment \
             \"ns0/svc0:http cluster IP\" -m tcp --dport 1024 -j KUBE-MARK-MASQ",
        ),
        (
            vec![
                comment("ns0/svc0:http -> 198.19.0.1:8080"),
                statistic(715_827_883),
                counter(),
                verdict(-3, Some("KUBE-SEP-X")),
            ],
            "-A C -m comment --comment \"ns0/svc0:http -> 198.19.0.1:8080\" -m statistic \
             --mode random --probability 0.33333333349 -j KUBE-SEP-X",
        ),
        (
            vec![
                meta(16),
                cmp(0, &[6]),
                comment("ns0/svc0:http"),
                xt("match", "tcp", 0, &[0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0, 0]),
                counter(),
                dnat([198, 19, 0, 1], 8080),
            ],
            "-A C -p tcp -m comment --comment \"ns0/svc0:http\" -m tcp -j DNAT \
             --to-destination 198.19.0.1:8080",
        ),
        (
            vec![
                meta(3),
                bitwise(&0x4000u32.to_ne_bytes()),
                cmp(1, &0x4000u32.to_ne_bytes()),
                counter(),
                verdict(-5, None),
            ],
            "-A C -m mark ! --mark 0x4000/0x4000 -j RETURN",
        ),
        (
            vec![
                meta(6),
                cmp(0, b"eth"),
                meta(16),
                cmp(0, &[17]),
                payload(1, 12, 4),
                bitwise(&[255, 255, 240, 0]),
                cmp(0, &[10, 0, 0, 0]),
                payload(2, 2, 2),
                range(1, 1000, 2000),
                counter(),
                verdict(1, None),
            ],
            "-A C -s 10.0.0.0/20 -i eth+ -p udp -m udp ! --dport 1000:2000 -j ACCEPT",
        ),
        (
            vec![
                meta(16),
                cmp(0, &[6]),
                payload(2, 0, 4),
                cmp(0, &[0, 5, 0, 6]),
                counter(),
                xt("target", "REJECT", 0, &7u32.to_ne_bytes()),
            ],
            "-A C -p tcp -m tcp --sport 5 --dport 6 -j REJECT --reject-with tcp-reset",
        ),
    ]
}

#[test]
fn decodes_iptables_nft_encodings() {
    for (exprs, want) in templates() {
        assert_eq!(decode(&exprs).as_deref(), Ok(want));
    }
}

#[test]
fn declines_what_it_does_not_know() {
    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (vec![expr("lookup", &[])], "expression lookup"),
        (vec![xt("match", "owner", 1, &[0; 16])], "match owner revision 1"),
        (vec![meta(16)], "a load nothing compares"),
        (vec![meta(1), cmp(0, &[8, 0])], "a comparison"),
        (vec![verdict(0, None), counter()], "after the target"),
        (vec![payload(2, 2, 2), cmp(0, &[0, 80])], "ports without"),
        (vec![xt("match", "comment", 0, &[b'x'; 100])], "comment info of"),
    ];
    for (exprs, says) in cases {
        match decode(&exprs) {
            Err(NftReadError::Unsupported(why)) => assert!(why.contains(says), "{why}"),
            other => panic!("{says}: {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, .. ProptestConfig::default() })]

    /// Any corruption of a real encoding (bytes changed, the message cut short) gives
    /// an error or some text, never a panic.
    #[test]
    fn corrupted_rules_never_panic(
        which in 0usize..6,
        patches in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..6),
        cut in any::<u16>(),
    ) {
        let (exprs, _) = templates().swap_remove(which);
        let mut bytes = exprs.concat();
        for (at, xor) in patches {
            let i = usize::from(at) % bytes.len();
            bytes[i] ^= xor.max(1);
        }
        let keep = bytes.len() - usize::from(cut) % (bytes.len() / 2).max(1);
        bytes.truncate(keep);
        let mut line = String::new();
        let _ = decode_rule(&bytes, &mut line);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut line = String::new();
        let _ = decode_rule(&bytes, &mut line);
    }
}
