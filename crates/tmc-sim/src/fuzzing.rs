//! Fuzz target bodies, shared by `fuzz/` (cargo-fuzz on nightly) and the regression replay
//! tests (`tests/fuzz_regressions.rs`, stable).
//!
//! Each target takes arbitrary bytes and panics only on a real bug: a parser that accepts
//! something it should not or misreads a value, a crash on any input, or a plan that breaks a
//! hard constraint of the model. The plan checks in [`check_plan`] are re-derived from the model's
//! documented semantics, independently of the solver's code: they use only the public data types,
//! never the solver's helpers, and not even the model's own matching methods (selectors,
//! tolerations, affinity), so a bug in those is caught too.

use std::collections::{BTreeMap, BTreeSet};

use tmc_core::{
    Cluster, ClusterAffinity, ClusterWeight, Decision, Division, LabelSelector, LabelSelectorRequirement,
    LocationSelector, Phase, Placement, PlacementInput, Plan, Preemption, Preference, Prioritizer, PrioritizerName,
    Quantity, QuantityError, Reason, ReasonCount, RebalancePolicy, ReplicaSchedulingType, SelectorOperator,
    SpreadConstraint, Taint, TaintEffect, Toleration, TolerationOperator, Workload, WorkloadKey, cluster_rejections,
    solve_validated, validate, validate::MAX_REPLICAS,
};

use crate::{
    ScenarioError, load_scenario, parse_scenario,
    render::{Format, render},
};

// ---------------------------------------------------------------------------------------------
// quantity

/// Fuzz target `quantity`: parses arbitrary UTF-8 with [`Quantity::parse`].
///
/// Checks, against an independent reading of the Kubernetes grammar with exact big-number
/// arithmetic: an accepted string is well-formed, non-negative (or zero) and has exactly the
/// value parsed (rounded up to `1n`); a rejected well-formed string is only ever rejected as too
/// large, and a malformed one as empty, malformed or of unknown suffix. For every accepted value
/// the display form parses back to the same quantity (and is a fixed point), and the serde form
/// round-trips through JSON.
pub fn quantity(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = Quantity::parse(text);
    let reference = reference_quantity(text);
    match parsed {
        Ok(q) => {
            match reference {
                RefQuantity::Value(nanos) => {
                    assert_eq!(q.nanos(), nanos, "{text:?} parsed to {q} ({} n), expected {nanos} n", q.nanos());
                }
                other => panic!("{text:?} was accepted as {q}, but the grammar says {other:?}"),
            }
            let shown = q.to_string();
            let back = Quantity::parse(&shown)
                .unwrap_or_else(|e| panic!("{text:?} parsed to {q:?}, whose display {shown:?} does not parse: {e}"));
            assert_eq!(back, q, "{text:?}: display {shown:?} parses to a different quantity");
            assert_eq!(back.to_string(), shown, "{text:?}: display is not canonical");
            let json = serde_json::to_string(&q).unwrap_or_else(|e| panic!("{q:?} does not serialize: {e}"));
            let from_json: Quantity =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json} does not deserialize: {e}"));
            assert_eq!(from_json, q, "{text:?}: serde round trip through {json}");
        }
        Err(e) => {
            let _ = e.to_string();
            let malformed_kind =
                matches!(e, QuantityError::Empty | QuantityError::Malformed(_) | QuantityError::UnknownSuffix { .. });
            match reference {
                RefQuantity::Malformed => assert!(malformed_kind, "{text:?} is malformed but was rejected as {e:?}"),
                RefQuantity::Negative => {
                    assert!(
                        matches!(e, QuantityError::Negative(_) | QuantityError::TooLarge(_)),
                        "{text:?} is negative but was rejected as {e:?}"
                    );
                }
                RefQuantity::Value(_) | RefQuantity::TooLarge => {
                    assert!(
                        matches!(e, QuantityError::TooLarge(_)),
                        "{text:?} is well-formed but was rejected as {e:?}"
                    );
                }
            }
        }
    }
}

/// What the reference reading of a quantity string gives.
#[derive(Debug, PartialEq, Eq)]
enum RefQuantity {
    /// Not the grammar.
    Malformed,
    /// A well-formed negative, non-zero amount.
    Negative,
    /// Well-formed, but above `u128::MAX` nano-units.
    TooLarge,
    /// The exact amount in nano-units, rounded up.
    Value(u128),
}

/// Reads `<sign><digits>[.<digits>]<suffix>` independently of [`Quantity::parse`]: the value is
/// computed exactly with a small big-number type, then rounded up to whole nano-units.
fn reference_quantity(input: &str) -> RefQuantity {
    let s = input.trim();
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let int_len = body.bytes().take_while(u8::is_ascii_digit).count();
    let (int, mut rest) = body.split_at(int_len);
    let mut frac = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        (frac, rest) = after_dot.split_at(frac_len);
    }
    if int.is_empty() && frac.is_empty() {
        return RefQuantity::Malformed;
    }
    // Value = digits * 10^(e10 - len(frac)) * 2^e2 units.
    let (e10, e2): (i128, u32) = match rest {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let Some(exp) = rest.strip_prefix(['e', 'E']) else { return RefQuantity::Malformed };
            let (sign, digits) = match exp.as_bytes().first() {
                Some(b'-') => (-1, &exp[1..]),
                Some(b'+') => (1, &exp[1..]),
                _ => (1, exp),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return RefQuantity::Malformed;
            }
            // Saturate absurd exponents; anything this large is out of range either way.
            let magnitude =
                digits.bytes().fold(0i128, |acc, b| (acc * 10 + i128::from(b - b'0')).min(1_000_000_000_000));
            (sign * magnitude, 0)
        }
    };
    let all_digits = format!("{int}{frac}");
    let significant = all_digits.trim_start_matches('0');
    if significant.is_empty() {
        return RefQuantity::Value(0);
    }
    if negative {
        return RefQuantity::Negative;
    }
    let mantissa = significant.trim_end_matches('0');
    let trailing = (significant.len() - mantissa.len()) as i128;
    // nanos = mantissa * 10^scale * 2^e2.
    let scale = e10 - frac.len() as i128 + trailing + 9;
    let digits = mantissa.len() as i128;
    // mantissa >= 10^(digits-1), so with digits - 1 + scale >= 39 the value is >= 10^39 > u128::MAX.
    if digits - 1 + scale >= 39 {
        return RefQuantity::TooLarge;
    }
    let mut n = BigUint::from_decimal(mantissa);
    for _ in 0..e2 {
        n.mul_small(2);
    }
    if scale >= 0 {
        for _ in 0..scale {
            n.mul_small(10);
        }
        n.to_u128().map_or(RefQuantity::TooLarge, RefQuantity::Value)
    } else {
        // Round up: ceil(n / 10^k). n < 2^60 * 10^digits, so dividing by 10^(digits + 19) leaves
        // a positive amount below one: the result is 1.
        let k = -scale;
        if k >= digits + 19 {
            return RefQuantity::Value(1);
        }
        let mut remainder = false;
        for _ in 0..k {
            remainder |= n.div_small(10) != 0;
        }
        if remainder {
            n.add_small(1);
        }
        n.to_u128().map_or(RefQuantity::TooLarge, RefQuantity::Value)
    }
}

/// Just enough of an arbitrary-precision unsigned integer for [`reference_quantity`]: base 2^32
/// limbs, least significant first.
struct BigUint(Vec<u32>);

impl BigUint {
    fn from_decimal(digits: &str) -> Self {
        let mut n = BigUint(Vec::new());
        for b in digits.bytes() {
            n.mul_small(10);
            n.add_small(u32::from(b - b'0'));
        }
        n
    }

    fn mul_small(&mut self, m: u32) {
        let mut carry = 0u64;
        for limb in &mut self.0 {
            let v = u64::from(*limb) * u64::from(m) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    fn add_small(&mut self, a: u32) {
        let mut carry = u64::from(a);
        for limb in &mut self.0 {
            if carry == 0 {
                return;
            }
            let v = u64::from(*limb) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    /// Divides in place; returns the remainder.
    fn div_small(&mut self, d: u32) -> u32 {
        let mut rem = 0u64;
        for limb in self.0.iter_mut().rev() {
            let v = (rem << 32) | u64::from(*limb);
            *limb = (v / u64::from(d)) as u32;
            rem = v % u64::from(d);
        }
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
        rem as u32
    }

    fn to_u128(&self) -> Option<u128> {
        if self.0.iter().skip(4).any(|&l| l != 0) {
            return None;
        }
        Some(self.0.iter().take(4).rev().fold(0u128, |acc, &l| (acc << 32) | u128::from(l)))
    }
}

// ---------------------------------------------------------------------------------------------
// scenario

/// Fuzz target `scenario`: arbitrary bytes, read as UTF-8 text (invalid sequences replaced), go
/// through [`parse_scenario`] and [`load_scenario`].
///
/// Neither may panic, and they must agree: `load_scenario` fails to parse exactly when
/// `parse_scenario` fails (with the same error), and otherwise reports exactly what
/// [`validate()`] reports. A parsed scenario is solved with [`solve_validated`] even when it is
/// invalid (documented not to panic; skipped only when a replica count exceeds the validation
/// maximum, to keep runs bounded). A valid scenario's plan must pass [`check_plan`] and render in
/// every format, with JSON and YAML reading back to the same plan.
pub fn scenario(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_scenario(&text);
    let loaded = load_scenario(&text);
    match (&parsed, &loaded) {
        (Err(e), Err(ScenarioError::Parse(e2))) => {
            assert_eq!(e, e2, "parse_scenario and load_scenario disagree on the parse error");
            let _ = e.to_string();
        }
        (Err(e), Ok(_)) => panic!("load_scenario accepted what parse_scenario rejects: {e}"),
        (Err(e), Err(ScenarioError::Invalid(_))) => panic!("load_scenario validated what parse_scenario rejects: {e}"),
        (Ok(_), Err(ScenarioError::Parse(e))) => panic!("load_scenario failed to parse what parse_scenario read: {e}"),
        (Ok(input), Err(ScenarioError::Invalid(errors))) => {
            assert!(!errors.0.is_empty(), "validation failed without naming a problem");
            assert_eq!(validate(input).err().as_ref(), Some(errors), "load_scenario reports other problems");
            let _ = errors.to_string();
        }
        (Ok(input), Ok(valid)) => {
            assert!(validate(input).is_ok(), "load_scenario accepted an input validate rejects");
            assert_eq!(input, valid, "load_scenario read another input than parse_scenario");
        }
    }
    let Ok(input) = parsed else { return };
    if loaded.is_err() {
        if input.workloads.iter().all(|w| w.replicas <= MAX_REPLICAS) {
            let _ = solve_validated(&input);
        }
        return;
    }
    let plan = solve_validated(&input);
    check_plan(&input, &plan);
    let table = render(&plan, Format::Table).unwrap_or_else(|e| panic!("table rendering failed: {e}"));
    assert!(table.ends_with('\n'));
    let json = render(&plan, Format::Json).unwrap_or_else(|e| panic!("JSON rendering failed: {e}"));
    let from_json: Plan = serde_json::from_str(&json).unwrap_or_else(|e| panic!("rendered JSON does not read: {e}"));
    // serde_json's default float parsing may be off by an ulp, so the certificate is compared
    // with a tolerance; everything else exactly.
    assert_same_plan(&from_json, &plan, "JSON rendering does not round-trip");
    let yaml = render(&plan, Format::Yaml).unwrap_or_else(|e| panic!("YAML rendering failed: {e}"));
    let from_yaml: Plan = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("rendered YAML does not read: {e}"));
    assert_same_plan(&from_yaml, &plan, "YAML rendering does not round-trip");
}

/// `a` and `b` are the same plan: equal placements, and objective, bound and gap equal up to
/// float rounding.
fn assert_same_plan(a: &Plan, b: &Plan, what: &str) {
    assert_eq!(a.placements, b.placements, "{what}");
    for (x, y, name) in [(a.objective, b.objective, "objective"), (a.bound, b.bound, "bound"), (a.gap, b.gap, "gap")] {
        assert!(close(x, y), "{what}: {name} {x} vs {y}");
    }
}

/// Equal up to a relative 1e-9 (absolute near zero).
fn close(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
}

// ---------------------------------------------------------------------------------------------
// solve

/// Fuzz target `solve`: decodes the bytes into a structured input with [`decode_input`] (a
/// handful of clusters and workloads exercising every policy field, sometimes with previous
/// decisions), skips it if [`validate()`] rejects it, solves it with [`solve_validated`] and checks
/// the plan with [`check_plan`].
pub fn solve(data: &[u8]) {
    let input = decode_input(data);
    if validate(&input).is_err() {
        return;
    }
    let plan = solve_validated(&input);
    check_plan(&input, &plan);
}

const LABEL_KEYS: [&str; 3] = ["tier", "gpu-mem", "env"];
const LABEL_VALUES: [&str; 6] = ["a", "b", "prod", "16", "40", "80"];
const INT_VALUES: [&str; 5] = ["0", "16", "40", "100", "-5"];
const PROVIDERS: [&str; 2] = ["aws", "gcp"];
const REGIONS: [&str; 3] = ["eu", "us", "ap"];
const ZONES: [&str; 4] = ["z1", "z2", "z3", "z4"];
const CAPABILITIES: [&str; 2] = ["gpu", "rdma"];
const APIS: [&str; 2] = ["deployments.apps/v1", "jobs.batch/v1"];
const RESOURCES: [&str; 3] = ["cpu", "memory", "nvidia.com/gpu"];
const TAINT_KEYS: [&str; 3] = ["maintenance", "spot", tmc_core::taint::NOT_READY_TAINT_KEY];
const TAINT_VALUES: [&str; 2] = ["", "true"];
const EFFECTS: [TaintEffect; 3] = [TaintEffect::NoSchedule, TaintEffect::PreferNoSchedule, TaintEffect::NoExecute];
const TOPOLOGY_KEYS: [&str; 5] = ["cluster", "provider", "region", "zone", "tier"];
const OPERATORS: [SelectorOperator; 6] = [
    SelectorOperator::In,
    SelectorOperator::NotIn,
    SelectorOperator::Exists,
    SelectorOperator::DoesNotExist,
    SelectorOperator::Gt,
    SelectorOperator::Lt,
];
const PRIORITIZERS: [PrioritizerName; 5] = [
    PrioritizerName::Balance,
    PrioritizerName::Steady,
    PrioritizerName::LeastAllocated,
    PrioritizerName::MostAllocated,
    PrioritizerName::Cost,
];

/// A deterministic reader of fuzz bytes; past the end it reads zeros. Choices are laid out so
/// that zero bytes give plain, common values (features off, modest capacities and requests).
struct Source<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Source<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn below(&mut self, n: u32) -> u32 {
        u32::from(self.byte()) % n
    }

    /// True with probability `num / den`; a zero byte (and so the end of the data) reads false.
    fn chance(&mut self, num: u32, den: u32) -> bool {
        self.below(den) >= den - num
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.byte() as usize % items.len()]
    }

    fn subset(&mut self, items: &[&str]) -> Vec<String> {
        let mask = self.byte();
        items.iter().enumerate().filter(|(i, _)| mask >> i & 1 == 1).map(|(_, s)| s.to_string()).collect()
    }

    /// A point in time, often absent, on a small clock so that tolerations do run out.
    fn time(&mut self) -> Option<i64> {
        match self.below(4) {
            0 | 1 => None,
            2 => Some(i64::from(self.below(1000))),
            _ => Some(i64::MAX - i64::from(self.below(2))),
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// A capacity-sized amount: usually small, sometimes huge (near `u128::MAX` nano-units).
    fn capacity(&mut self) -> Quantity {
        match self.below(8) {
            0..=2 => Quantity::from_millis(250 * u64::from(4 + self.below(64))),
            3..=4 => Quantity::from_units(u64::from(8 + self.below(32))),
            5 => Quantity::from_units(u64::from(self.u16()) << 20),
            6 => Quantity::ZERO,
            // Near the top of the range, but never exactly `Quantity::MAX`, which counts as
            // unlimited (see `Cluster::capacity`).
            _ => Quantity::from_nanos(u128::MAX - 1 - u128::from(self.byte())),
        }
    }

    /// A request- or allocation-sized amount.
    fn request(&mut self) -> Quantity {
        match self.below(8) {
            0..=3 => Quantity::from_millis(250 * u64::from(1 + self.below(16))),
            4..=5 => Quantity::from_units(u64::from(1 + self.below(4))),
            6 => Quantity::ZERO,
            _ => Quantity::from_nanos(u128::MAX / (2 + u128::from(self.below(3)))),
        }
    }

    fn selector(&mut self) -> LabelSelector {
        let mut s = LabelSelector::default();
        if self.chance(1, 2) {
            s.match_labels.insert(self.pick(&LABEL_KEYS).to_string(), self.pick(&LABEL_VALUES).to_string());
        }
        for _ in 0..self.below(3) {
            let operator = self.pick(&OPERATORS);
            let values = match operator {
                SelectorOperator::In | SelectorOperator::NotIn => {
                    (0..1 + self.below(2)).map(|_| self.pick(&LABEL_VALUES).to_string()).collect()
                }
                SelectorOperator::Exists | SelectorOperator::DoesNotExist => Vec::new(),
                SelectorOperator::Gt | SelectorOperator::Lt => vec![self.pick(&INT_VALUES).to_string()],
            };
            s.match_expressions.push(LabelSelectorRequirement {
                key: self.pick(&LABEL_KEYS).to_string(),
                operator,
                values,
            });
        }
        s
    }

    fn location_selector(&mut self) -> LocationSelector {
        LocationSelector {
            providers: self.subset(&PROVIDERS),
            regions: self.subset(&REGIONS),
            zones: self.subset(&ZONES),
        }
    }

    fn affinity(&mut self, name: Option<String>, cluster_pool: &[&str]) -> ClusterAffinity {
        ClusterAffinity {
            name,
            label_selector: self.chance(1, 2).then(|| self.selector()),
            location_selector: self.chance(1, 3).then(|| self.location_selector()),
            cluster_names: if self.chance(1, 3) { self.subset(cluster_pool) } else { Vec::new() },
            exclude: if self.chance(1, 4) { self.subset(cluster_pool) } else { Vec::new() },
        }
    }

    fn cluster(&mut self, i: usize) -> Cluster {
        let mut c = Cluster { name: format!("c{i}"), ..Cluster::default() };
        for key in LABEL_KEYS {
            if !self.chance(1, 3) {
                c.labels.insert(key.to_string(), self.pick(&LABEL_VALUES).to_string());
            }
        }
        c.location.provider = (!self.chance(1, 5)).then(|| self.pick(&PROVIDERS).to_string());
        c.location.region = (!self.chance(1, 5)).then(|| self.pick(&REGIONS).to_string());
        c.location.zone = (!self.chance(1, 5)).then(|| self.pick(&ZONES).to_string());
        c.capabilities = self.subset(&CAPABILITIES);
        c.api_resources = self.subset(&APIS);
        for res in RESOURCES.into_iter().chain(["pods"]) {
            let listed = if res == "nvidia.com/gpu" { self.chance(1, 3) } else { !self.chance(1, 5) };
            if listed {
                c.capacity.insert(res.to_string(), self.capacity());
            }
            if self.chance(1, 4) {
                c.allocated.insert(res.to_string(), self.request());
            }
        }
        for _ in 0..self.pick(&[0, 0, 0, 1, 1, 2]) {
            let taint = Taint {
                key: self.pick(&TAINT_KEYS).to_string(),
                value: self.pick(&TAINT_VALUES).to_string(),
                effect: self.pick(&EFFECTS),
                added_at: self.time(),
            };
            if !c.taints.iter().any(|t| t.key == taint.key && t.effect == taint.effect) {
                c.taints.push(taint);
            }
        }
        c.unschedulable = self.chance(1, 8);
        c.ready = !self.chance(1, 6);
        c.not_ready_since = self.time();
        c.cost = self.chance(1, 2).then(|| f64::from(self.below(10)) / 2.0);
        c
    }

    fn toleration(&mut self) -> Toleration {
        let effect = if self.chance(1, 3) { None } else { Some(self.pick(&EFFECTS)) };
        let toleration_seconds =
            (effect == Some(TaintEffect::NoExecute) && self.chance(1, 2)).then(|| match self.below(8) {
                0 => i64::MAX,
                _ => i64::from(self.below(600)),
            });
        if self.chance(1, 5) {
            return Toleration {
                key: String::new(),
                operator: TolerationOperator::Exists,
                value: String::new(),
                effect,
                toleration_seconds,
            };
        }
        let key = self.pick(&TAINT_KEYS).to_string();
        if self.chance(1, 2) {
            Toleration { key, operator: TolerationOperator::Exists, value: String::new(), effect, toleration_seconds }
        } else {
            let value = self.pick(&TAINT_VALUES).to_string();
            Toleration { key, operator: TolerationOperator::Equal, value, effect, toleration_seconds }
        }
    }

    fn workload(&mut self, i: usize, cluster_pool: &[&str]) -> Workload {
        let mut w = Workload::named(&format!("w{i}"));
        // The policy comes first, so that short inputs reach it.
        w.priority = self.below(5) as i32 - 2;
        if self.chance(1, 3) {
            w.preemption = Preemption::PreemptLowerPriority;
        }
        w.rebalance.policy = self.pick(&[RebalancePolicy::Never, RebalancePolicy::OnRecovery, RebalancePolicy::Always]);
        if self.chance(1, 2) {
            w.rebalance.max_moves_per_round = Some(self.below(4));
        }
        w.namespace = self.pick(&["default", "team-a"]).to_string();
        // Up to the validation maximum, rarely: a million replicas costs ~100 ms per solve.
        w.replicas = match self.below(64) {
            0..=43 => 1 + self.below(9),
            44..=47 => 0,
            48..=57 => self.below(64),
            58..=62 => u32::from(self.u16()),
            _ => MAX_REPLICAS - self.below(3),
        };
        for res in RESOURCES {
            let requested = if res == "nvidia.com/gpu" { self.chance(1, 4) } else { !self.chance(1, 3) };
            if requested {
                w.resources.insert(res.to_string(), self.request());
            }
        }
        if self.chance(1, 8) {
            w.resources.insert("pods".to_string(), Quantity::from_units(u64::from(self.below(3))));
        }
        if self.chance(1, 4) {
            w.required_apis = self.subset(&APIS);
        }
        if self.chance(1, 4) {
            w.required_capabilities = self.subset(&CAPABILITIES);
        }
        match self.below(4) {
            0 | 1 => {}
            2 => w.cluster_affinity = Some(self.affinity(None, cluster_pool)),
            _ => {
                for g in 0..1 + self.below(3) {
                    let a = self.affinity(Some(format!("g{g}")), cluster_pool);
                    w.cluster_affinities.push(a);
                }
            }
        }
        for _ in 0..self.below(3) {
            let t = self.toleration();
            w.tolerations.push(t);
        }
        for _ in 0..self.below(3) {
            let topology_key = self.pick(&TOPOLOGY_KEYS).to_string();
            if w.spread_constraints.iter().any(|s| s.topology_key == topology_key) {
                continue;
            }
            let min_groups = self.chance(1, 2).then(|| 1 + self.below(4));
            let max_groups = self.chance(1, 3).then(|| min_groups.unwrap_or(1) + self.below(3));
            let max_skew = self.chance(1, 2).then(|| self.below(4));
            w.spread_constraints.push(SpreadConstraint { topology_key, min_groups, max_groups, max_skew });
        }
        let rs = &mut w.replica_scheduling;
        rs.kind = if self.chance(1, 4) { ReplicaSchedulingType::Duplicated } else { ReplicaSchedulingType::Divided };
        rs.division = self.pick(&[Division::Dynamic, Division::Weighted, Division::Aggregated]);
        if rs.kind == ReplicaSchedulingType::Divided {
            if rs.division == Division::Weighted && self.chance(1, 2) {
                for _ in 0..1 + self.below(3) {
                    let cluster_names = if self.chance(1, 2) { self.subset(cluster_pool) } else { Vec::new() };
                    let label_selector = (cluster_names.is_empty() || self.chance(1, 4)).then(|| self.selector());
                    rs.weights.push(ClusterWeight { cluster_names, label_selector, weight: self.below(4) });
                }
            }
            rs.min_replicas_per_cluster = self.chance(1, 4).then(|| self.below(4));
            rs.max_replicas_per_cluster =
                self.chance(1, 4).then(|| rs.min_replicas_per_cluster.unwrap_or(0).max(1) + self.below(4));
        }
        w.number_of_clusters = self.chance(1, 3).then(|| 1 + self.below(4));
        for _ in 0..self.below(2) {
            let weight = 1 + self.below(100);
            let (label_selector, location_selector) = match self.below(3) {
                0 => (Some(self.selector()), None),
                1 => (None, Some(self.location_selector())),
                _ => (Some(self.selector()), Some(self.location_selector())),
            };
            w.preferences.push(Preference { weight, label_selector, location_selector });
        }
        if self.chance(1, 3) {
            for _ in 0..1 + self.below(3) {
                let name = self.pick(&PRIORITIZERS);
                let weight = i32::from(self.byte()) % 201 - 100;
                if !w.prioritizers.iter().any(|p| p.name == name) {
                    w.prioritizers.push(Prioritizer { name, weight });
                }
            }
        }
        w
    }
}

/// Decodes fuzz bytes into a structured [`PlacementInput`] for the `solve` target: up to six
/// clusters and five workloads drawn from small pools of names, labels, locations, resources and
/// taints (so that selectors, tolerations and spread keys actually meet), with every policy field
/// exercised, and sometimes previous decisions (including ones naming a vanished cluster or
/// group). Deterministic; reading past the end of `data` reads zeros. The result is almost always
/// valid.
pub fn decode_input(data: &[u8]) -> PlacementInput {
    let mut src = Source { data, pos: 0 };
    // The shape comes first, so that short inputs reach every mode.
    let count = src.pick(&[3, 1, 2, 4, 5, 6, 0]);
    let workload_count = 1 + src.below(5) as usize;
    let previous_mode = src.below(4);
    let now = src.time();
    let clusters: Vec<Cluster> = (0..count).map(|i| src.cluster(i)).collect();
    let mut pool: Vec<String> = clusters.iter().map(|c| c.name.clone()).collect();
    pool.push("ghost".to_string());
    let pool: Vec<&str> = pool.iter().map(String::as_str).collect();
    let workloads: Vec<Workload> = (0..workload_count).map(|i| src.workload(i, &pool)).collect();
    let mut previous = Vec::new();
    match previous_mode {
        // None.
        0 => {}
        // As an earlier solve left them: the plan for a fleet and workloads that have since
        // changed (replicas rescaled; clusters since cordoned, tainted, not ready or resized).
        1 => {
            let mut before =
                PlacementInput { clusters: clusters.clone(), workloads: workloads.clone(), ..Default::default() };
            for c in &mut before.clusters {
                match src.below(6) {
                    0 => {}
                    1 => c.unschedulable = false,
                    2 => c.taints.clear(),
                    3 => c.ready = true,
                    4 => c.capacity.values_mut().for_each(|q| *q = q.saturating_add(*q)),
                    _ => c.allocated.clear(),
                }
            }
            for w in &mut before.workloads {
                if src.chance(1, 3) {
                    w.replicas = src.below(12);
                }
            }
            previous = solve_validated(&before).placements;
            previous.retain(|p| !p.decisions.is_empty());
        }
        // Arbitrary, often impossible to keep (a vanished cluster or group, too many replicas).
        2 => {
            for w in &workloads {
                if src.chance(1, 2) {
                    continue;
                }
                let decisions = src
                    .subset(&pool)
                    .into_iter()
                    .map(|cluster| {
                        let replicas = if src.chance(1, 2) { 1 + src.below(6) } else { w.replicas.max(1) };
                        Decision { cluster, replicas }
                    })
                    .collect();
                let affinity_group = match w.cluster_affinities.len() {
                    0 => None,
                    n => Some(if src.chance(1, 8) { "gone".to_string() } else { format!("g{}", src.below(n as u32)) }),
                };
                previous.push(Placement {
                    workload: w.key(),
                    decisions,
                    replica_scheduling_type: w.replica_scheduling.kind,
                    requested: w.replicas,
                    affinity_group,
                    ..Placement::default()
                });
            }
        }
        // Plausible: the request split evenly (Divided) or copied (Duplicated) over a few clusters.
        _ => {
            for w in &workloads {
                let names: Vec<String> = src.subset(&pool[..pool.len() - 1]);
                if names.is_empty() || w.replicas == 0 {
                    continue;
                }
                let k = names.len() as u32;
                let divided = w.replica_scheduling.kind == ReplicaSchedulingType::Divided;
                let decisions: Vec<Decision> = names
                    .into_iter()
                    .enumerate()
                    .map(|(i, cluster)| {
                        let share = w.replicas / k + u32::from((i as u32) < w.replicas % k);
                        Decision { cluster, replicas: if divided { share } else { w.replicas } }
                    })
                    .filter(|d| d.replicas > 0)
                    .collect();
                let affinity_group = (!w.cluster_affinities.is_empty())
                    .then(|| format!("g{}", src.below(w.cluster_affinities.len() as u32)));
                previous.push(Placement { workload: w.key(), decisions, affinity_group, ..Placement::default() });
            }
        }
    }
    PlacementInput { clusters, workloads, previous, now }
}

// ---------------------------------------------------------------------------------------------
// plan invariants

/// Checks a plan against the hard rules of the model, then re-solves to check determinism,
/// independence from input order and stability. `input` must be valid and `plan` must be
/// `solve_validated(input)`. Panics with a description of the first broken rule.
///
/// Per workload: one placement, fields consistent with the workload (`requested`, type, `placed`
/// = sum of decisions, phase, an explanation when not Scheduled); decisions sorted, on existing
/// clusters, with at least one replica; `Divided` decisions sum to at most the request (exactly
/// when Scheduled) and respect `min`/`maxReplicasPerCluster`; `Duplicated` decisions each equal
/// the request; at most `numberOfClusters` clusters (exactly, for Duplicated Scheduled); every
/// decision cluster matches the affinity (or the reported `affinityGroup`), serves the required
/// APIs and capabilities, has every spread topology key, has no untolerated `NoExecute` taint
/// (including not-ready), and when it only allows kept replicas (cordon, untolerated
/// `NoSchedule`, `NoExecute` tolerated for a while) holds no more than the previous decision had
/// there; a Weighted cluster has a positive weight; spread group bounds and skew hold when
/// anything is placed. Per cluster: for every resource with positive demand, `allocated` plus
/// the sum of `requests x replicas` stays within `capacity` (`pods`: one per replica unless
/// requested otherwise, enforced only where listed; other resources not listed have none).
///
/// The certificate: the objective is `sum (1 + priority - lowest priority) x placed`, the bound
/// is at least the objective, the gap is `(bound - objective) / bound` within 0..=1, all finite.
///
/// Re-solving: the same input gives the same plan; reversed clusters, workloads and previous
/// decisions give the same plan; and with the plan fed back as `previous` ("an unchanged input
/// re-solved with its plan as previous moves nothing"), every decision of a workload that does not
/// rebalance is kept (with at least as many replicas), and its Scheduled placement stays exactly
/// as it was. The second plan must pass the same checks.
pub fn check_plan(input: &PlacementInput, plan: &Plan) {
    check_invariants(input, plan);
    assert_eq!(&solve_validated(input), plan, "solving the same input twice gave different plans");
    let mut reordered = input.clone();
    reordered.clusters.reverse();
    reordered.workloads.reverse();
    reordered.previous.reverse();
    assert_eq!(&solve_validated(&reordered), plan, "reordering the input changed the plan");
    let workloads: BTreeMap<WorkloadKey, &Workload> = input.workloads.iter().map(|w| (w.key(), w)).collect();
    let again_input = PlacementInput { previous: plan.placements.clone(), ..input.clone() };
    assert!(validate(&again_input).is_ok(), "a plan fed back as previous decisions does not validate");
    let again = solve_validated(&again_input);
    check_invariants(&again_input, &again);
    check_rejections(input, plan);
    for (first, second) in plan.placements.iter().zip(&again.placements) {
        let key = &first.workload;
        // A rebalancing workload may go on moving, round by round (`maxMovesPerRound`).
        if workloads[key].rebalance.policy != RebalancePolicy::Never {
            continue;
        }
        for d in &first.decisions {
            let kept = second.decisions.iter().find(|e| e.cluster == d.cluster).map_or(0, |e| e.replicas);
            assert!(
                kept >= d.replicas,
                "{key}: re-solving with the plan as previous moved replicas off {} ({} -> {kept})",
                d.cluster,
                d.replicas
            );
        }
        if first.phase == Phase::Scheduled {
            assert_eq!(first.decisions, second.decisions, "{key}: a Scheduled placement changed when re-solved");
            assert_eq!(second.phase, Phase::Scheduled, "{key}: a Scheduled placement is no longer Scheduled");
        }
    }
}

/// The per-cluster reasons of the first workload that is not fully placed name only unused
/// clusters of the input, each with a reason, and counted by the documented rule they give the
/// placement's `unavailable`.
fn check_rejections(input: &PlacementInput, plan: &Plan) {
    let Some(p) = plan.placements.iter().find(|p| p.phase != Phase::Scheduled) else { return };
    let key = &p.workload;
    let rejections = match cluster_rejections(input, key) {
        Ok(Some(r)) => r,
        other => panic!("{key}: no per-cluster reasons: {other:?}"),
    };
    let names: BTreeSet<&str> = input.clusters.iter().map(|c| c.name.as_str()).collect();
    let mut counts: BTreeMap<Reason, u32> = BTreeMap::new();
    for r in &rejections {
        assert!(names.contains(r.cluster.as_str()), "{key}: rejection of unknown cluster {}", r.cluster);
        assert!(p.decisions.iter().all(|d| d.cluster != r.cluster), "{key}: {} is used and rejected", r.cluster);
        assert!(!r.reasons.is_empty(), "{key}: rejection of {} without a reason", r.cluster);
        // The most fundamental reason, or every resource that fell short.
        let shorts = r.reasons.iter().take_while(|x| matches!(x, Reason::Insufficient { .. })).count();
        for reason in &r.reasons[..shorts.max(1)] {
            *counts.entry(reason.clone()).or_insert(0) += 1;
        }
    }
    let mut expected: Vec<ReasonCount> =
        counts.into_iter().map(|(reason, clusters)| ReasonCount { reason, clusters }).collect();
    expected.sort_by(|a, b| b.clusters.cmp(&a.clusters).then_with(|| a.reason.cmp(&b.reason)));
    assert_eq!(p.unavailable, expected, "{key}: unavailable does not count the per-cluster reasons");
}

/// The per-replica demand of `w` for `resource` in nano-units: its request, and for `pods` one
/// unless it requests another amount.
fn per_replica(w: &Workload, resource: &str) -> u128 {
    match w.resources.get(resource) {
        Some(q) => q.nanos(),
        None if resource == "pods" => Quantity::from_units(1).nanos(),
        None => 0,
    }
}

fn check_invariants(input: &PlacementInput, plan: &Plan) {
    let workloads: BTreeMap<WorkloadKey, &Workload> = input.workloads.iter().map(|w| (w.key(), w)).collect();
    let clusters: BTreeMap<&str, &Cluster> = input.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let previous: BTreeMap<&WorkloadKey, BTreeMap<&str, u32>> = input
        .previous
        .iter()
        .map(|p| (&p.workload, p.decisions.iter().map(|d| (d.cluster.as_str(), d.replicas)).collect()))
        .collect();
    let keys: Vec<&WorkloadKey> = plan.placements.iter().map(|p| &p.workload).collect();
    assert_eq!(keys, workloads.keys().collect::<Vec<_>>(), "the plan must have one placement per workload, sorted");

    // The certificate: objective = sum over workloads of (1 + priority - lowest priority) x placed;
    // the bound is an upper bound on it; gap = (bound - objective) / bound (0 when the bound is 0).
    let lowest = input.workloads.iter().map(|w| w.priority).min().unwrap_or(0);
    let objective: f64 = plan
        .placements
        .iter()
        .map(|p| (1.0 + f64::from(workloads[&p.workload].priority) - f64::from(lowest)) * p.placed as f64)
        .sum();
    let (obj, bound, gap) = (plan.objective, plan.bound, plan.gap);
    assert!(obj.is_finite() && bound.is_finite() && gap.is_finite(), "certificate {obj} {bound} {gap} must be finite");
    assert!(close(obj, objective), "objective {obj}, expected {objective}");
    assert!(bound >= obj || close(bound, obj), "the bound {bound} is below the plan's own objective {obj}");
    let expected_gap = if bound == 0.0 { 0.0 } else { (bound - obj) / bound };
    assert!(close(gap, expected_gap), "gap {gap}, expected {expected_gap} from bound {bound} and objective {obj}");
    assert!((0.0..=1.0).contains(&gap) || close(gap, 0.0), "gap {gap} outside 0..=1");

    // Replicas per (cluster, workload), for the capacity check.
    let mut on_cluster: BTreeMap<&str, Vec<(&Workload, u64)>> = BTreeMap::new();
    for p in &plan.placements {
        let w = workloads[&p.workload];
        let key = &p.workload;
        let r = u64::from(w.replicas);
        let rs = &w.replica_scheduling;
        let divided = rs.kind == ReplicaSchedulingType::Divided;
        assert_eq!(p.requested, w.replicas, "{key}: requested");
        assert_eq!(p.replica_scheduling_type, rs.kind, "{key}: replicaSchedulingType");
        for pair in p.decisions.windows(2) {
            assert!(pair[0].cluster < pair[1].cluster, "{key}: decisions must be sorted by cluster, without repeats");
        }
        let sum: u64 = p.decisions.iter().map(|d| u64::from(d.replicas)).sum();
        assert_eq!(p.placed, sum, "{key}: placed must be the sum of the decisions");
        let n_clusters = p.decisions.len();
        let scheduled = p.phase == Phase::Scheduled;
        // A Scheduled placement may still carry events ("rebalanced: 1 replica moved").
        assert!(scheduled || !p.message.is_empty(), "{key}: {:?} without an explanation", p.phase);
        if p.decisions.is_empty() {
            let expected = if r == 0 { Phase::Scheduled } else { Phase::Unschedulable };
            assert_eq!(p.phase, expected, "{key}: phase without decisions");
        } else {
            assert_ne!(p.phase, Phase::Unschedulable, "{key}: Unschedulable with decisions");
        }
        if divided {
            assert!(sum <= r, "{key}: {sum} replicas placed, {r} requested");
            assert_eq!(scheduled, sum == r, "{key}: {:?} with {sum}/{r} replicas", p.phase);
        } else if !p.decisions.is_empty() {
            let complete = w.number_of_clusters.is_none_or(|n| n_clusters == n as usize);
            assert_eq!(scheduled, complete, "{key}: Duplicated {:?} on {n_clusters} clusters", p.phase);
        }
        if let Some(n) = w.number_of_clusters {
            assert!(n_clusters <= n as usize, "{key}: {n_clusters} clusters, numberOfClusters is {n}");
        }
        let affinity: Option<&ClusterAffinity> = if w.cluster_affinities.is_empty() {
            assert_eq!(p.affinity_group, None, "{key}: affinityGroup without clusterAffinities");
            w.cluster_affinity.as_ref()
        } else {
            let group = p.affinity_group.as_deref();
            let found = w.cluster_affinities.iter().find(|a| a.name.as_deref() == group);
            Some(found.unwrap_or_else(|| panic!("{key}: affinityGroup {group:?} is not one of the workload's groups")))
        };
        let prev = previous.get(key);
        for d in &p.decisions {
            let name = d.cluster.as_str();
            let c = clusters.get(name).unwrap_or_else(|| panic!("{key}: decision on unknown cluster {name}"));
            let n = u64::from(d.replicas);
            assert!(n >= 1, "{key}: empty decision on {name}");
            if divided {
                if let Some(min) = rs.min_replicas_per_cluster {
                    assert!(n >= u64::from(min), "{key}: {n} on {name}, minReplicasPerCluster {min}");
                }
                if let Some(max) = rs.max_replicas_per_cluster {
                    assert!(n <= u64::from(max), "{key}: {n} on {name}, maxReplicasPerCluster {max}");
                }
                if rs.division == Division::Weighted && !rs.weights.is_empty() {
                    assert!(static_weight(&rs.weights, c) > 0, "{key}: replicas on {name}, which has weight 0");
                }
            } else {
                assert_eq!(n, r, "{key}: Duplicated decision on {name} must hold all replicas");
            }
            match access(w, affinity, c, input.now) {
                Access::Open => {}
                Access::KeepOnly(why) => {
                    let before = prev.and_then(|m| m.get(name)).copied().unwrap_or(0);
                    assert!(
                        d.replicas <= before,
                        "{key}: {} replicas on {name}, which only keeps existing replicas ({before} before): {why}",
                        d.replicas
                    );
                }
                Access::Closed(why) => panic!("{key}: replicas on {name}, which is closed to it: {why}"),
            }
            on_cluster.entry(name).or_default().push((w, n));
        }
        if !p.decisions.is_empty() {
            for s in &w.spread_constraints {
                let mut groups: BTreeMap<&str, u64> = BTreeMap::new();
                for d in &p.decisions {
                    let value = clusters.get(d.cluster.as_str()).and_then(|c| topology(c, &s.topology_key));
                    let Some(value) = value else { continue };
                    *groups.entry(value).or_insert(0) += if divided { u64::from(d.replicas) } else { 1 };
                }
                let used = groups.len() as u64;
                let what = format!("{key}: spread on {} over {groups:?}", s.topology_key);
                if let Some(min) = s.min_groups {
                    assert!(used >= u64::from(min), "{what}: fewer than minGroups {min}");
                }
                if let Some(max) = s.max_groups {
                    assert!(used <= u64::from(max), "{what}: more than maxGroups {max}");
                }
                if let Some(skew) = s.max_skew {
                    let hi = groups.values().max().copied().unwrap_or(0);
                    let lo = groups.values().min().copied().unwrap_or(0);
                    assert!(hi - lo <= u64::from(skew), "{what}: skew above maxSkew {skew}");
                }
            }
        }
        let unused = clusters.len() - p.decisions.len();
        for count in &p.unavailable {
            assert!(count.clusters >= 1 && count.clusters as usize <= unused, "{key}: {count:?} of {unused} unused");
        }
        let is_short = |c: &&ReasonCount| matches!(c.reason, Reason::Insufficient { .. });
        let counted: usize = p.unavailable.iter().filter(|c| !is_short(c)).map(|c| c.clusters as usize).sum::<usize>()
            + p.unavailable.iter().filter(is_short).map(|c| c.clusters as usize).max().unwrap_or(0);
        assert!(counted <= unused, "{key}: {counted} clusters counted, {unused} unused");
        assert!(p.unavailable.windows(2).all(|w| w[0].clusters >= w[1].clusters), "{key}: unavailable not sorted");
    }

    // What is left on each cluster once the whole plan is in: resource -> nano-units in use.
    let used: BTreeMap<&str, BTreeMap<&str, u128>> = on_cluster
        .iter()
        .map(|(name, placed)| {
            let mut per: BTreeMap<&str, u128> = BTreeMap::new();
            for (w, n) in placed {
                for res in w.resources.keys().map(String::as_str).chain(["pods"]) {
                    let d = per_replica(w, res).saturating_mul(u128::from(*n));
                    let e = per.entry(res).or_insert(0);
                    *e = e.saturating_add(d);
                }
            }
            (*name, per)
        })
        .collect();
    let none = BTreeMap::new();
    for p in &plan.placements {
        check_work_conserving(input, workloads[&p.workload], p, |c| {
            room(c, workloads[&p.workload], used.get(c.name.as_str()).unwrap_or(&none))
        });
    }

    for (name, placed) in &on_cluster {
        let c = clusters[name];
        let mut resources: BTreeSet<&str> = c.capacity.keys().map(String::as_str).collect();
        for (w, _) in placed {
            resources.extend(w.resources.keys().map(String::as_str));
        }
        resources.insert("pods");
        for res in resources {
            // Sum in u128 nano-units; overflow means more than any capacity.
            let demand = placed.iter().try_fold(0u128, |acc, (w, n)| {
                per_replica(w, res).checked_mul(u128::from(*n)).and_then(|d| acc.checked_add(d))
            });
            if demand == Some(0) {
                continue;
            }
            let capacity = match c.capacity.get(res) {
                Some(q) => q.nanos(),
                None if res == "pods" => continue,
                None => 0,
            };
            let allocated = c.allocated.get(res).map_or(0, |q| q.nanos());
            let total = demand.and_then(|d| d.checked_add(allocated));
            assert!(
                total.is_some_and(|t| t <= capacity),
                "{name}: {res} overcommitted: allocated {allocated} n + placed {demand:?} n > capacity {capacity} n \
                 (placements: {placed:?})",
                placed = placed.iter().map(|(w, n)| (w.key().0, *n)).collect::<Vec<_>>()
            );
        }
    }
}

/// Where a workload cannot leave replicas unplaced: capacity it could use must not be left over.
///
/// Checked only where the policy makes it unambiguous: no spread constraints, no
/// `numberOfClusters`, no per-cluster bounds and no static weights. Then a `Divided` workload that
/// is not fully placed leaves no open cluster (of its affinity group) with room for one more
/// replica, and a `Duplicated` one leaves no open, unused cluster with room for all of them. Room
/// is what is left after the whole plan, which is never more than there was when the workload was
/// placed.
fn check_work_conserving(input: &PlacementInput, w: &Workload, p: &Placement, room: impl Fn(&Cluster) -> u128) {
    let rs = &w.replica_scheduling;
    let r = u64::from(w.replicas);
    if r == 0
        || !w.spread_constraints.is_empty()
        || w.number_of_clusters.is_some()
        || rs.min_replicas_per_cluster.is_some()
        || rs.max_replicas_per_cluster.is_some()
        || !rs.weights.is_empty()
    {
        return;
    }
    let affinity = match &p.affinity_group {
        Some(g) => w.cluster_affinities.iter().find(|a| a.name.as_ref() == Some(g)),
        None => w.cluster_affinity.as_ref(),
    };
    let key = &p.workload;
    let placed: u64 = p.decisions.iter().map(|d| u64::from(d.replicas)).sum();
    for c in &input.clusters {
        if access(w, affinity, c, input.now) != Access::Open {
            continue;
        }
        let used = p.decisions.iter().any(|d| d.cluster == c.name);
        let left = room(c);
        match rs.kind {
            ReplicaSchedulingType::Divided => assert!(
                placed == r || left == 0,
                "{key}: {placed}/{r} replicas placed, but open cluster {} has room for {left} more",
                c.name
            ),
            ReplicaSchedulingType::Duplicated => assert!(
                used || left < u128::from(r),
                "{key}: Duplicated skipped open cluster {}, which has room for all {r} replicas ({left})",
                c.name
            ),
        }
    }
}

/// How many more replicas of `w` fit on `c`, given what the plan uses there (`used`: resource
/// to nano-units); `u128::MAX` when nothing it needs is limited.
fn room(c: &Cluster, w: &Workload, used: &BTreeMap<&str, u128>) -> u128 {
    let mut fit = u128::MAX;
    for res in w.resources.keys().map(String::as_str).chain(["pods"]) {
        let per = per_replica(w, res);
        if per == 0 {
            continue;
        }
        let free = match c.capacity.get(res) {
            Some(q) => q.nanos().saturating_sub(c.allocated.get(res).map_or(0, |a| a.nanos())),
            None if res == "pods" => continue,
            None => 0,
        };
        fit = fit.min(free.saturating_sub(used.get(res).copied().unwrap_or(0)) / per);
    }
    fit
}

/// Whether a cluster may take replicas of a workload, re-derived from the model's rules.
#[derive(Debug, PartialEq, Eq)]
enum Access {
    /// New and existing replicas.
    Open,
    /// Only replicas that were there before may stay (why).
    KeepOnly(String),
    /// No replicas at all (why).
    Closed(String),
}

fn access(w: &Workload, affinity: Option<&ClusterAffinity>, c: &Cluster, now: Option<i64>) -> Access {
    if let Some(a) = affinity
        && !affinity_matches(a, c)
    {
        return Access::Closed(format!("affinity {a:?}"));
    }
    if let Some(api) = w.required_apis.iter().find(|api| !c.api_resources.contains(api)) {
        return Access::Closed(format!("does not serve {api}"));
    }
    if let Some(cap) = w.required_capabilities.iter().find(|cap| !c.capabilities.contains(cap)) {
        return Access::Closed(format!("lacks capability {cap}"));
    }
    if let Some(s) = w.spread_constraints.iter().find(|s| topology(c, &s.topology_key).is_none()) {
        return Access::Closed(format!("has no {} for spread", s.topology_key));
    }
    let mut keep_only = c.unschedulable.then(|| "cordoned".to_string());
    let not_ready = (!c.ready).then(|| Taint { added_at: c.not_ready_since, ..Taint::not_ready() });
    for t in c.taints.iter().chain(&not_ready) {
        let matching: Vec<&Toleration> = w.tolerations.iter().filter(|tol| tolerates(tol, t)).collect();
        match t.effect {
            TaintEffect::PreferNoSchedule => {}
            TaintEffect::NoSchedule => {
                if matching.is_empty() {
                    keep_only = Some(format!("untolerated {t}"));
                }
            }
            TaintEffect::NoExecute => {
                // A bounded toleration lasts until addedAt + tolerationSeconds (forever when
                // either time is unknown), and only keeps what is there.
                let forever = matching.iter().any(|tol| tol.toleration_seconds.is_none());
                let for_a_while = matching.iter().any(|tol| match (now, t.added_at, tol.toleration_seconds) {
                    (Some(now), Some(at), Some(secs)) => i128::from(now) < i128::from(at) + i128::from(secs.max(0)),
                    _ => true,
                });
                if !forever && !for_a_while {
                    return Access::Closed(format!("untolerated or expired {t}"));
                }
                if !forever {
                    keep_only = Some(format!("{t} tolerated for a while"));
                }
            }
        }
    }
    match keep_only {
        Some(why) => Access::KeepOnly(why),
        None => Access::Open,
    }
}

/// A cluster's value for a spread topology key.
fn topology<'c>(c: &'c Cluster, key: &str) -> Option<&'c str> {
    match key {
        "cluster" => Some(c.name.as_str()),
        "provider" => c.location.provider.as_deref(),
        "region" => c.location.region.as_deref(),
        "zone" => c.location.zone.as_deref(),
        label => c.labels.get(label).map(String::as_str),
    }
}

fn selector_matches(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && s.match_expressions.iter().all(|e| {
            let value = labels.get(&e.key);
            match e.operator {
                SelectorOperator::In => value.is_some_and(|v| e.values.contains(v)),
                SelectorOperator::NotIn => !value.is_some_and(|v| e.values.contains(v)),
                SelectorOperator::Exists => value.is_some(),
                SelectorOperator::DoesNotExist => value.is_none(),
                SelectorOperator::Gt | SelectorOperator::Lt => {
                    let parse = |s: &str| s.parse::<i64>().ok();
                    match (value.and_then(|v| parse(v)), e.values.first().and_then(|b| parse(b))) {
                        (Some(v), Some(b)) if e.values.len() == 1 => {
                            if e.operator == SelectorOperator::Gt {
                                v > b
                            } else {
                                v < b
                            }
                        }
                        _ => false,
                    }
                }
            }
        })
}

fn affinity_matches(a: &ClusterAffinity, c: &Cluster) -> bool {
    let listed =
        |list: &[String], value: &Option<String>| list.is_empty() || value.as_ref().is_some_and(|v| list.contains(v));
    !a.exclude.contains(&c.name)
        && (a.cluster_names.is_empty() || a.cluster_names.contains(&c.name))
        && a.label_selector.as_ref().is_none_or(|s| selector_matches(s, &c.labels))
        && a.location_selector.as_ref().is_none_or(|l| {
            listed(&l.providers, &c.location.provider)
                && listed(&l.regions, &c.location.region)
                && listed(&l.zones, &c.location.zone)
        })
}

/// Kubernetes `ToleratesTaint`.
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect_ok = t.effect.is_none_or(|e| e == taint.effect);
    let key_ok = match t.operator {
        TolerationOperator::Exists => t.key.is_empty() || t.key == taint.key,
        TolerationOperator::Equal => t.key == taint.key && t.value == taint.value,
    };
    effect_ok && key_ok
}

/// The static weight of a cluster: the first entry naming or selecting it, else 0.
fn static_weight(weights: &[ClusterWeight], c: &Cluster) -> u32 {
    weights
        .iter()
        .find(|e| {
            e.cluster_names.contains(&c.name)
                || e.label_selector.as_ref().is_some_and(|s| selector_matches(s, &c.labels))
        })
        .map_or(0, |e| e.weight)
}
