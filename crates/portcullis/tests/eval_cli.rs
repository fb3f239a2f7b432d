//! `portcullis trace`, `ports`, `lint` and `diff` (issue 6) as a user runs them: output
//! shapes, JSON, and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn eval_data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../portcullis-eval/test_data").join(rel)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().expect("portcullis runs")
}

fn text(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn ports_predicts_the_scanner_rig_in_nmaps_words() {
    let rig = eval_data("kernel/0101_scan_rig.rules");
    let o = run(&[
        "ports",
        path(&rig),
        "--src",
        "198.18.0.1",
        "--listen",
        "22,80,53/udp",
        "-p",
        "20-30,53,80,110,113,123,137,161,443",
    ]);
    assert!(o.status.success());
    assert_eq!(
        text(&o),
        "Predicted port states of this host from 198.18.0.1 (".to_owned()
            + path(&rig)
            + ")\n\
             PORT    STATE         SERVICE    REASON\n\
             20/tcp  filtered      ftp-data   no-response\n\
             21/tcp  filtered      ftp        no-response\n\
             22/tcp  open          ssh        syn-ack\n\
             23/tcp  filtered      telnet     no-response\n\
             24/tcp  filtered      priv-mail  no-response\n\
             25/tcp  closed        smtp       reset\n\
             26/tcp  filtered      rsftp      no-response\n\
             27/tcp  filtered      nsw-fe     no-response\n\
             28/tcp  filtered      unknown    no-response\n\
             29/tcp  filtered      msg-icp    no-response\n\
             30/tcp  filtered      unknown    no-response\n\
             53/tcp  filtered      domain     no-response\n\
             80/tcp  open          http       syn-ack\n\
             110/tcp filtered      pop3       port-unreach\n\
             113/tcp filtered      ident      admin-prohibited\n\
             123/tcp filtered      ntp        no-response\n\
             137/tcp filtered      netbios-ns no-response\n\
             161/tcp filtered      snmp       no-response\n\
             443/tcp closed        https      reset\n\
             20/udp  open|filtered ftp-data   no-response\n\
             21/udp  open|filtered ftp        no-response\n\
             22/udp  open|filtered ssh        no-response\n\
             23/udp  open|filtered telnet     no-response\n\
             24/udp  open|filtered priv-mail  no-response\n\
             25/udp  open|filtered smtp       no-response\n\
             26/udp  open|filtered unknown    no-response\n\
             27/udp  open|filtered nsw-fe     no-response\n\
             28/udp  open|filtered unknown    no-response\n\
             29/udp  open|filtered msg-icp    no-response\n\
             30/udp  open|filtered unknown    no-response\n\
             53/udp  open          domain     udp-response\n\
             80/udp  open|filtered http       no-response\n\
             110/udp open|filtered pop3       no-response\n\
             113/udp open|filtered auth       no-response\n\
             123/udp closed        ntp        port-unreach\n\
             137/udp filtered      netbios-ns admin-prohibited\n\
             161/udp closed        snmp       port-unreach\n\
             443/udp open|filtered https      no-response\n"
    );
}

#[test]
fn ports_json_has_one_object_per_port() {
    let rig = eval_data("kernel/0101_scan_rig.rules");
    let o = run(&["ports", path(&rig), "--src", "198.18.0.1", "--listen", "22", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let list = v.as_array().expect("a list");
    assert_eq!(list.len(), 2 * 65_536);
    let find = |port: u64, proto: &str| {
        list.iter()
            .find(|x| x["port"] == port && x["proto"] == proto)
            .cloned()
            .expect("the port is listed")
    };
    assert_eq!(
        find(22, "tcp"),
        serde_json::json!({"port": 22, "proto": "tcp", "state": "open", "reason": "syn-ack"})
    );
    assert_eq!(find(113, "tcp")["reason"], "admin-prohibited");
    assert_eq!(find(1000, "tcp")["state"], "filtered");
    assert_eq!(find(1000, "udp")["state"], "open|filtered");
    assert_eq!(find(53, "udp")["state"], "closed");
}

#[test]
fn ports_folds_like_nmap() {
    let rig = eval_data("kernel/0101_scan_rig.rules");
    let o = run(&["ports", path(&rig), "--src", "198.18.0.1", "--listen", "22,80"]);
    let out = text(&o);
    assert!(
        out.contains(
            "Not shown: 65530 filtered tcp ports (no-response), 65532 open|filtered udp ports (no-response)\n"
        ),
        "{out}"
    );
    assert!(out.contains("22/tcp  open"), "{out}");
}

#[test]
fn trace_json_names_the_deciding_rule_and_its_line() {
    let f = eval_data("kernel/0102_chains.rules");
    let o = run(&[
        "trace",
        path(&f),
        "-p",
        "tcp",
        "--dport",
        "2222",
        "--src",
        "198.18.0.10",
        "--dst",
        "198.18.0.2",
        "-i",
        "pcl0",
        "--json",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["verdict"], "REJECT");
    assert_eq!(v["outcomes"][0]["reject_with"], "icmp-host-prohibited");
    assert_eq!(v["rule"]["table"], "filter");
    assert_eq!(v["rule"]["chain"], "ADMIN");
    assert_eq!(v["rule"]["line"], 52);
    let o = run(&[
        "trace",
        path(&f),
        "-p",
        "tcp",
        "--dport",
        "2222",
        "--src",
        "198.18.0.1",
        "--dst",
        "198.18.0.2",
        "-i",
        "pcl0",
    ]);
    // mangle/INPUT accepts (mark 0x1) but only ends the mangle table; filter decides.
    assert!(
        text(&o).starts_with("verdict: ACCEPT (filter/ADMIN rule 1 (line 51))\n"),
        "{}",
        text(&o)
    );
}

#[test]
fn lint_exit_codes() {
    let seed = eval_data("lint/seed.sh");
    let fixed = eval_data("lint/seed_fixed.sh");
    let warn = eval_data("lint/PCL004_no_ipv6.rules");
    assert_eq!(run(&["lint", path(&seed)]).status.code(), Some(1));
    assert_eq!(run(&["lint", path(&fixed)]).status.code(), Some(0));
    assert_eq!(run(&["lint", path(&warn)]).status.code(), Some(0));
    assert_eq!(run(&["lint", path(&warn), "--deny-warnings"]).status.code(), Some(2));
    let o = run(&["lint", path(&seed), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let codes: Vec<&str> =
        v["findings"].as_array().expect("list").iter().filter_map(|f| f["code"].as_str()).collect();
    assert_eq!(codes, ["PCL001", "PCL002", "PCL004"]);
    assert_eq!(v["findings"][0]["line"], 1);
    assert_eq!(v["errors"], 2);
}

#[test]
fn diff_reports_exactly_the_changed_port_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = "*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp --dport 22 -j ACCEPT\n";
    let a = dir.path().join("a.rules");
    let b = dir.path().join("b.rules");
    std::fs::write(&a, format!("{head}COMMIT\n")).expect("write");
    std::fs::write(&b, format!("{head}-A INPUT -p udp --dport 53 -j ACCEPT\nCOMMIT\n"))
        .expect("write");
    let same = run(&["diff", path(&a), path(&a)]);
    assert_eq!(same.status.code(), Some(0));
    assert_eq!(text(&same), "rules: no change\nbehaviour: no change in behaviour\n");
    let o = run(&["diff", path(&a), path(&b)]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o);
    assert!(out.contains("INPUT NEW udp/53 from any address: DROP -> ACCEPT\n"), "{out}");
    let o = run(&["diff", path(&a), path(&b), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["behaviour_changed"], true);
    assert_eq!(v["rules"][0]["change"], "added");
    assert_eq!(v["rules"][0]["new_line"], 5);
}
