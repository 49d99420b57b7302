//! The protocol's headline properties, measured by the simulator on a small
//! mesh (seeded, so a failure reproduces): delivery to interested nodes,
//! bandwidth, crash detection, and no live node declared dead.

use sentinel_simulator::{RunReport, Scenario, Sim};

fn run(toml: &str) -> RunReport {
    let sc = Scenario::parse(toml).expect("valid scenario");
    let mut sim = Sim::new(sc).expect("run set up");
    sim.run(|_| {});
    RunReport::build(&sim, 1.0)
}

#[test]
fn small_mesh_meets_the_delivery_bandwidth_and_detection_targets() {
    let r = run(r#"
        name = "quality"
        nodes = 150
        duration_s = 150
        warmup_s = 40
        seed = 21
        boot_stagger_ms = 20
        [network]
        latency_median_ms = 50
        loss = 0.002
        [[events]]
        at_s = 100
        action = "crash"
        fraction = 0.2
    "#);
    let d = &r.delivery;
    assert!(d.reports > 1000, "{d:?}");
    // Seeds 21-25 give 96.97-97.63% (mean 97.3%) on this 150-node mesh with
    // a 20% crash; the bound sits below that spread, the pair ratio below
    // is the tight one.
    assert!(d.reports_reaching_99pct_on_time >= 0.965, "{d:?}");
    assert!(d.on_time_ratio >= 0.99, "{d:?}");
    assert!(
        r.bandwidth_bytes_per_s.mean < 64_000.0,
        "{:?}",
        r.bandwidth_bytes_per_s
    );
    let det = &r.detection;
    assert!(det.detected >= 100, "{det:?}");
    assert_eq!(det.undetected, 0, "{det:?}");
    assert!(det.time_ms.max <= 5_000.0, "{det:?}");
    assert_eq!(det.false_deaths, 0, "{det:?}");
    // Loss plus helpers that crashed a moment ago can get a healthy node
    // suspected (then refuted); it must stay rare next to true detections.
    assert!(det.false_suspicions * 10 < det.detected as u64, "{det:?}");
    assert_eq!(r.isolated_at_end, 0);
    assert!(
        r.recovery[0].recovered_after_s.is_some_and(|s| s <= 30.0),
        "{:?}",
        r.recovery
    );
}

#[test]
fn overloaded_nodes_and_loss_cause_no_false_deaths() {
    let r = run(r#"
        name = "soak-small"
        nodes = 120
        duration_s = 300
        warmup_s = 30
        seed = 22
        [network]
        loss = 0.01
        [overload]
        fraction = 0.1
    "#);
    assert_eq!(r.detection.false_deaths, 0, "{:?}", r.detection);
    // Stalling hosts are suspected (that is what suspicion is for), healthy
    // ones only when loss eats a probe and both indirect probes.
    let det = &r.detection;
    assert!(det.overloaded_suspicions > 0, "{det:?}");
    assert!(
        det.false_suspicions * 20 < det.overloaded_suspicions,
        "{det:?}"
    );
    assert!(r.delivery.delivered_ratio > 0.98, "{:?}", r.delivery);
}

#[test]
fn a_partition_heals_and_delivery_recovers() {
    let r = run(r#"
        name = "partition-small"
        nodes = 120
        duration_s = 200
        warmup_s = 30
        seed = 23
        [[events]]
        at_s = 60
        action = "partition"
        groups = 2
        [[events]]
        at_s = 100
        action = "heal"
    "#);
    assert_eq!(r.isolated_at_end, 0);
    let heal = &r.recovery[1];
    assert!(
        heal.recovered_after_s.is_some_and(|s| s <= 60.0),
        "{:?}",
        r.recovery
    );
}

#[test]
fn equivocators_are_certified_everywhere_and_crashes_and_restores_frame_nobody() {
    let r = run(r#"
        name = "equivocation"
        nodes = 200
        duration_s = 130
        warmup_s = 30
        seed = 23
        boot_stagger_ms = 20
        [network]
        latency_median_ms = 50
        loss = 0.001
        [churn]
        fraction = 0.05
        mean_up_s = 40
        mean_down_s = 8
        [[events]]
        at_s = 50
        action = "equivocate"
        count = 2
        [[events]]
        at_s = 60
        action = "crash"
        fraction = 0.1
        [[events]]
        at_s = 70
        action = "restart"
        [[events]]
        at_s = 80
        action = "restore"
        fraction = 0.05
        [[events]]
        at_s = 90
        action = "equivocate"
        count = 2
    "#);
    let eq = &r.equivocation;
    assert_eq!(eq.equivocators, 4, "{eq:?}");
    assert_eq!(eq.certified_at_99pct, 4, "{eq:?}");
    assert!(eq.time_to_99pct_ms.max <= 2_000.0, "{eq:?}");
    assert_eq!(eq.min_holding_at_end, 1.0, "{eq:?}");
    assert_eq!(eq.max_distinct_certificates, 1, "{eq:?}");
    assert_eq!(eq.honest_quarantined, 0, "{eq:?}");
    assert_eq!(r.detection.false_deaths, 0, "{:?}", r.detection);
    assert_eq!(r.isolated_at_end, 0);
}

/// Voted quarantine on a small mesh with the shipped classifier: a flooder
/// and a forger are voted out everywhere, and twenty colluding framers (a
/// sixth of the weight) who lie about one victim and vote yes on every
/// accusation whose replay agrees get nobody honest quarantined.
#[test]
fn attackers_are_voted_out_and_framers_sybils_and_degraded_accusers_frame_nobody() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sc = Scenario::parse(
        r#"
        name = "voted"
        nodes = 120
        duration_s = 240
        warmup_s = 30
        seed = 31
        boot_stagger_ms = 20
        [network]
        loss = 0.005
        [overload]
        fraction = 0.05
        [degraded]
        count = 3
        start_s = 60
        inbound_loss = 0.3
        [detection]
        quorum = true
        [[attackers]]
        kind = "framer"
        count = 20
        start_s = 60
        intensity = 3.0
        eclipse = true
        [[attackers]]
        kind = "sybil"
        count = 2
        start_s = 60
        intensity = 1.0
        [[attackers]]
        kind = "flooder"
        count = 2
        start_s = 100
        intensity = 1.0
        [[attackers]]
        kind = "forger"
        count = 2
        start_s = 120
        intensity = 1.0
    "#,
    )
    .expect("valid scenario");
    let mut sim = Sim::new(sc).expect("run set up");
    let model = sentinel_models::TractScorer::load(&root.join("models/mlp-classifier.json"), None)
        .expect("the shipped model loads");
    sim.set_detection(Some(model), None);
    sim.run(|_| {});
    let r = RunReport::build(&sim, 1.0);
    let q = r.quorum.as_ref().expect("the scenario votes");
    for kind in ["flooder", "forger"] {
        let t = &q.by_kind[kind];
        assert_eq!((t.attackers, t.quarantined), (2, 2), "{kind}: {q:?}");
        assert!(t.time_ms.max < 60_000.0, "{kind}: {q:?}");
    }
    // Neither the framers (who also try to crowd out their victim's
    // neighbours), nor certificates voted by unrostered keys, nor honest
    // hosts whose network loses 30% and who accuse wrongly, get anyone
    // honest quarantined.
    assert_eq!(q.honest_quarantined, 0, "{q:?}");
    assert!(q.false_certificates_by_accuser.is_empty(), "{q:?}");
    let eclipse = q
        .victim_neighbours_attacking
        .as_ref()
        .expect("victims sampled");
    assert!(eclipse.mean < 0.5, "{eclipse:?}");
    let degraded = q.degraded.as_ref().expect("degraded hosts");
    // They rarely accuse at all: a node whose own links fail probes makes
    // no accusation (`voting::DEGRADED_LINK_LOSS`).
    assert!(degraded.nodes > 0, "{degraded:?}");
    assert_eq!(
        (degraded.certified, degraded.quarantined),
        (0, 0),
        "{degraded:?}"
    );
    assert!(q.certified >= 2, "{q:?}");
    assert!(
        q.votes.get("own-view-below").copied().unwrap_or(0) > 0,
        "{q:?}"
    );
}
