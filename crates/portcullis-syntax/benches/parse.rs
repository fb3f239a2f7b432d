//! Parse + validate throughput on a kube-proxy-scale dump (issue 2's speed goal).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

// The allocator of the `portcullis` binary, so that the figures are the command's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The one kube-proxy-scale generator of the workspace, shared with `cargo xtask bench`.
#[allow(dead_code, unused_imports, reason = "the bench uses part of the generator")]
#[path = "../../../xtask/src/kube_gen.rs"]
mod kube_gen;

fn bench(c: &mut Criterion) {
    let text = kube_gen::kube_ruleset(kube_gen::KubeSpec { services: 10_000, generation: 0 });
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10);
    g.bench_function("kube_10000_parse", |b| {
        b.iter(|| portcullis_syntax::parse_save(&text).expect("generated dump parses"));
    });
    g.bench_function("kube_10000_parse_validate", |b| {
        b.iter(|| {
            let rs = portcullis_syntax::parse_save(&text).expect("generated dump parses");
            portcullis_rules::validate(&rs)
        });
    });
    g.bench_function("kube_10000_validate_save", |b| {
        // What `portcullis check` runs on a save file: one streaming pass, no model.
        b.iter(|| portcullis_syntax::validate_save(&text).expect("generated dump is valid"));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
