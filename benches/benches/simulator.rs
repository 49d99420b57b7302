//! Simulator speed: a whole seeded run of a 200-node mesh for 60 simulated
//! seconds, in modelled and in real crypto mode. Criterion's throughput is
//! the run's event count, so the report reads in events per second; the
//! modelled/real ratio is what cost-modelling buys.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sentinel_simulator::scenario::CryptoMode;
use sentinel_simulator::{Scenario, Sim};

fn scenario(crypto: CryptoMode) -> Scenario {
    let mut sc = Scenario::parse(
        r#"
        name = "bench"
        nodes = 200
        duration_s = 60
        warmup_s = 20
        seed = 9
        boot_stagger_ms = 20
        [network]
        loss = 0.001
        "#,
    )
    .expect("valid scenario");
    sc.crypto = crypto;
    sc
}

fn events(sc: &Scenario) -> u64 {
    let mut sim = Sim::new(sc.clone()).expect("run set up");
    sim.run(|_| {});
    sim.totals().events
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("simulator");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    for (name, mode) in [
        ("run_200_nodes_60s_modelled", CryptoMode::Modelled),
        ("run_200_nodes_60s_real", CryptoMode::Real),
    ] {
        let sc = scenario(mode);
        g.throughput(Throughput::Elements(events(&sc)));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut sim = Sim::new(sc.clone()).expect("run set up");
                sim.run(|_| {});
                sim.totals().events
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
