//! Exact mode: the whole batch as one mixed-integer program, solved to optimality by
//! [`good_lp`] (microlp, pure Rust, by default; HiGHS with the `highs` feature).
//!
//! It maximises the same objective the fast solver is certified against (replicas placed,
//! weighted by priority, see [`super::certificate`]) under every hard constraint the fast solver
//! obeys, so on the same input its optimum is an upper bound on the fast plan's objective and the
//! reference the fast solver is measured against. Ties are broken toward keeping previous
//! replicas where they are (a move penalty too small to ever trade a replica). Soft preferences
//! (scores, static weights beyond weight 0, affinity-group order) are not part of the program.
//!
//! Model, per workload `w` with `r` replicas (placement order, clusters by name):
//! - `x[w][c]` replicas on cluster `c` (Divided: integer `0..=cap`; Duplicated: `r · u[w][c]`),
//!   `u[w][c]` binary "uses `c`" where a constraint needs it;
//! - affinity groups: binary `g[w][t]`, at most one, and `c` is usable only under a chosen group
//!   that admits it, with that group's room (keep-only admission caps at the previous count);
//! - `Σ x ≤ r` (Divided), `x ≥ minReplicasPerCluster · u`, `Σ u ≤ numberOfClusters`;
//! - spread: binary "group used" `v[w][k][g]`, `minGroups ≤ Σ v ≤ maxGroups` when anything is
//!   placed, and every used group's count within `[L, L + maxSkew]` for some `L`;
//! - capacity: `Σ_w demand · x ≤ free` for every cluster and enforced resource.
//!
//! The integer solution is checked against the exact integer ledger before it becomes a plan.

use std::collections::BTreeMap;

use good_lp::{Expression, ProblemVariables, ResolutionError, Solution, SolverModel, Variable, constraint, variable};

use super::{
    certificate::replica_values,
    filter::Filters,
    finish,
    fleet::{Counts, Fleet, UNLIMITED},
    place::{Outcome, Survey, WorkloadCtx},
};
use crate::{PlacementInput, Plan, ValidationErrors, validate::validate};

/// The MILP solver exact mode uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExactSolver {
    /// microlp: pure Rust, always available; fine up to a few thousand variables.
    #[default]
    MicroLp,
    /// HiGHS (the `highs` cargo feature; needs cmake and a C++ toolchain to build).
    #[cfg(feature = "highs")]
    Highs,
}

/// Limits and the solver for [`solve_exact`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExactOptions {
    /// Refuse instances whose program has more variables than this (branch and bound grows
    /// exponentially; exact mode is for small instances and for measuring the fast solver).
    pub max_variables: usize,
    /// The MILP solver.
    pub solver: ExactSolver,
}

impl Default for ExactOptions {
    fn default() -> Self {
        ExactOptions { max_variables: 5_000, solver: ExactSolver::default() }
    }
}

/// Why [`solve_exact`] gave no plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExactError {
    /// The input is invalid (the same errors as [`crate::solve`]).
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// The program is larger than [`ExactOptions::max_variables`].
    #[error("the exact program has {variables} variables, more than the limit of {limit} (use the fast solver)")]
    TooLarge {
        /// Variables the program would have.
        variables: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// The MILP solver failed (it should not: the empty plan is always feasible).
    #[error("the MILP solver failed: {0}")]
    Solver(String),
    /// The solver's solution, rounded to integers, breaks a capacity limit of the exact ledger.
    #[error("the MILP solution overcommits {cluster} after rounding; no plan is returned")]
    Numerical {
        /// The cluster whose capacity the rounded solution exceeds.
        cluster: String,
    },
}

/// Validates `input` and places every workload by solving the batch to optimality (see the
/// module docs for the model). The plan's `bound` is the proven optimum, so `gap` is 0.
///
/// Deterministic: the program is built in a canonical order and the solvers are deterministic.
pub fn solve_exact(input: &PlacementInput, options: &ExactOptions) -> Result<Plan, ExactError> {
    validate(input)?;
    let fleet = Fleet::compile(input);
    let order = super::placement_order(input);
    let filters = Filters::compile(&order, &fleet.clusters, input.now);
    let previous: BTreeMap<_, _> = input.previous.iter().map(|p| (p.workload.clone(), p)).collect();
    let contexts: Vec<WorkloadCtx<'_>> = order
        .iter()
        .enumerate()
        .map(|(i, w)| WorkloadCtx::new(i, w, &fleet, &filters, previous.get(&w.key()).copied()))
        .collect();

    let model = Model::build(&fleet, &filters, &contexts);
    if model.variables > options.max_variables {
        return Err(ExactError::TooLarge { variables: model.variables, limit: options.max_variables });
    }
    let (counts, terms, optimum) = model.solve(options.solver)?;

    // Check the rounded solution against the exact ledger: never return an overcommitted plan.
    let mut usage = fleet.empty_usage();
    for (wc, counts) in contexts.iter().zip(&counts) {
        fleet.add(&mut usage, counts, &wc.demand);
    }
    let free = fleet.free_flat();
    let nr = fleet.resources.len();
    for c in 0..fleet.clusters.len() {
        let over = (0..nr).any(|r| free[c * nr + r] != UNLIMITED && usage.used(c * nr + r) > free[c * nr + r]);
        if over {
            return Err(ExactError::Numerical { cluster: fleet.clusters[c].name.clone() });
        }
    }

    let values = replica_values(&contexts);
    let objective: f64 =
        counts.iter().zip(&values).map(|(c, v)| c.iter().map(|&(_, n)| n).sum::<u64>() as f64 * v).sum();
    let outcomes: Vec<Outcome> = contexts
        .iter()
        .zip(counts)
        .zip(terms)
        .map(|((wc, counts), term)| {
            let mut others = usage.clone();
            fleet.remove(&mut others, &counts, &wc.demand);
            outcome(wc, &fleet, &filters, &others, counts, term)
        })
        .collect();
    let mut placements: Vec<_> = contexts.iter().zip(outcomes).map(|(wc, o)| finish(wc, &fleet, &filters, o)).collect();
    placements.sort_by(|a, b| a.workload.cmp(&b.workload));
    // The program's optimum bounds every plan; rounding can only lose what the check above let
    // through, so the bound is at least the plan's own objective.
    let bound = optimum.max(objective);
    let gap = if bound > 0.0 { (bound - objective) / bound } else { 0.0 };
    Ok(Plan { placements, objective, bound, gap })
}

/// The outcome of one workload of the exact solution, with the explanation data the fast solver
/// would give for the same decisions (`others`: what every other workload uses).
fn outcome(
    wc: &WorkloadCtx<'_>,
    fleet: &Fleet<'_>,
    filters: &Filters<'_>,
    others: &super::fleet::Usage,
    counts: Counts,
    term: usize,
) -> Outcome {
    let r = wc.replicas();
    let complete = if r == 0 {
        true
    } else if wc.divided() {
        counts.iter().map(|&(_, n)| n).sum::<u64>() == r
    } else {
        wc.w.number_of_clusters.map_or(!counts.is_empty(), |n| counts.len() == n as usize)
    };
    let Survey { candidates, no_room, .. } = wc.survey(fleet, filters, others, term, &counts, true);
    Outcome { term, counts, complete, no_room, candidates, ..Outcome::default() }
}

/// One workload's part of the program.
struct WorkloadVars {
    /// `(cluster, replicas variable, uses variable)`; Duplicated workloads only have `uses`.
    clusters: Vec<(usize, Option<Variable>, Option<Variable>)>,
    /// Affinity-group choice variables (only with several groups).
    terms: Vec<Variable>,
}

/// The program under construction.
struct Model {
    vars: ProblemVariables,
    constraints: Vec<good_lp::Constraint>,
    objective: Expression,
    /// The part of `objective` that is the certified objective (without the move tie-break).
    value: Expression,
    workloads: Vec<WorkloadVars>,
    replicas: Vec<u64>,
    variables: usize,
}

impl Model {
    fn add(&mut self, v: good_lp::VariableDefinition) -> Variable {
        self.variables += 1;
        self.vars.add(v)
    }

    fn build(fleet: &Fleet<'_>, filters: &Filters<'_>, contexts: &[WorkloadCtx<'_>]) -> Model {
        let values = replica_values(contexts);
        let total_previous: u64 = contexts.iter().map(|wc| wc.previous.iter().map(|&(_, n)| n).sum::<u64>()).sum();
        // Less than one replica's worth in total, so it only breaks ties.
        let tie = 0.5 / (total_previous as f64 + 1.0);
        let empty = fleet.empty_usage();
        let nr = fleet.resources.len();
        let mut m = Model {
            vars: ProblemVariables::new(),
            constraints: Vec::new(),
            objective: Expression::default(),
            value: Expression::default(),
            workloads: Vec::new(),
            replicas: Vec::new(),
            variables: 0,
        };
        // Capacity rows: per flat (cluster, resource) index, the terms `demand · x`.
        let mut load: BTreeMap<usize, Expression> = BTreeMap::new();

        for (wc, &value) in contexts.iter().zip(&values) {
            let r = wc.replicas();
            let divided = wc.divided();
            let min_per = wc.min_per();
            let max_per = wc.max_per();
            // Room per affinity group on the empty fleet: `cap[t][c]`.
            let surveys: Vec<Survey> =
                (0..wc.terms.len()).map(|t| wc.survey(fleet, filters, &empty, t, &[], false)).collect();
            let mut cands: Vec<usize> = surveys.iter().flat_map(|s| s.candidates.iter().copied()).collect();
            cands.sort_unstable();
            cands.dedup();
            m.replicas.push(r);
            if r == 0 || cands.is_empty() {
                m.workloads.push(WorkloadVars { clusters: Vec::new(), terms: Vec::new() });
                continue;
            }
            let cap = |t: usize, c: usize| {
                let room = surveys[t].room[c];
                if divided { room.min(max_per).min(r) } else { u64::from(room >= r) }
            };
            let several_terms = wc.terms.len() > 1;
            let needs_uses = !divided
                || several_terms
                || min_per > 1
                || wc.w.number_of_clusters.is_some()
                || !wc.w.spread_constraints.is_empty();
            let terms: Vec<Variable> = if several_terms {
                (0..wc.terms.len()).map(|_| m.add(variable().binary())).collect()
            } else {
                Vec::new()
            };
            if several_terms {
                let sum: Expression = terms.iter().copied().sum();
                m.constraints.push(constraint!(sum <= 1));
            }
            let mut clusters = Vec::with_capacity(cands.len());
            let mut placed = Expression::default();
            for &c in &cands {
                let caps: Vec<u64> = (0..wc.terms.len()).map(|t| cap(t, c)).collect();
                let max_cap = caps.iter().copied().max().unwrap_or(0);
                let uses = needs_uses.then(|| m.add(variable().binary()));
                let x = divided.then(|| m.add(variable().integer().min(0).max(max_cap as f64)));
                // The replicas on `c`, as an expression.
                let on_c: Expression = match (x, uses) {
                    (Some(x), _) => x.into(),
                    (None, Some(u)) => (r as f64) * u,
                    (None, None) => Expression::default(),
                };
                if let (Some(x), Some(u)) = (x, uses) {
                    m.constraints.push(constraint!(x <= (max_cap as f64) * u));
                    if min_per > 1 {
                        m.constraints.push(constraint!(x >= (min_per as f64) * u));
                    } else {
                        m.constraints.push(constraint!(x >= u));
                    }
                }
                if several_terms {
                    // Usable only under a chosen group that admits it, with that group's room.
                    let admitting: Expression = terms.iter().zip(&caps).filter(|(_, k)| **k > 0).map(|(g, _)| *g).sum();
                    if let Some(u) = uses {
                        m.constraints.push(constraint!(u <= admitting));
                    }
                    if let Some(x) = x {
                        let room: Expression = terms.iter().zip(&caps).map(|(g, k)| (*k as f64) * *g).sum();
                        m.constraints.push(constraint!(x <= room));
                    }
                }
                // Capacity rows, normalised by the free amount; integer rows get half a unit of
                // slack so tolerances cannot cut off an exact fit.
                let base = c * nr;
                for &(res, q) in &wc.demand.0 {
                    let free = fleet.free_flat()[base + res];
                    if free == UNLIMITED {
                        continue;
                    }
                    let coef = q as f64 / (free as f64 + 0.5);
                    let row = load.entry(base + res).or_default();
                    *row += coef * on_c.clone();
                }
                // Move tie-break: replicas kept where they were.
                let before = super::place::count_of(&wc.previous, c);
                if before > 0 {
                    let kept = m.add(variable().min(0).max(before.min(r) as f64));
                    m.constraints.push(constraint!(kept <= on_c.clone()));
                    m.objective += tie * kept;
                }
                placed += on_c;
                clusters.push((c, x, uses));
            }
            if divided {
                m.constraints.push(constraint!(placed.clone() <= r as f64));
            }
            m.value += value * placed.clone();
            m.objective += value * placed;
            let uses: Vec<(usize, Variable)> = clusters.iter().filter_map(|&(c, _, u)| u.map(|u| (c, u))).collect();
            if let Some(n) = wc.w.number_of_clusters {
                let sum: Expression = uses.iter().map(|&(_, u)| u).sum();
                m.constraints.push(constraint!(sum <= f64::from(n)));
            }
            if !wc.w.spread_constraints.is_empty() {
                m.spread(fleet, wc, &clusters, &uses);
            }
            m.workloads.push(WorkloadVars { clusters, terms });
        }
        for (_, row) in load {
            m.constraints.push(constraint!(row <= 1.0));
        }
        m
    }

    /// Spread constraints of one workload over the clusters it may use.
    fn spread(
        &mut self,
        fleet: &Fleet<'_>,
        wc: &WorkloadCtx<'_>,
        clusters: &[(usize, Option<Variable>, Option<Variable>)],
        uses: &[(usize, Variable)],
    ) {
        let r = wc.replicas() as f64;
        // "Anything placed": the constraints apply only then.
        let any = self.add(variable().binary());
        let all: Expression = uses.iter().map(|&(_, u)| u).sum();
        self.constraints.push(constraint!(any <= all));
        for &(_, u) in uses {
            self.constraints.push(constraint!(u <= any));
        }
        for s in &wc.w.spread_constraints {
            let ids = fleet.groups(&s.topology_key);
            // group id -> (uses of its clusters, replica count expression)
            let mut groups: BTreeMap<u32, (Vec<Variable>, Expression)> = BTreeMap::new();
            for &(c, x, u) in clusters {
                // The filter closes clusters without the key; skip them defensively.
                let (Some(Some(g)), Some(u)) = (ids.get(c).copied(), u) else { continue };
                let entry = groups.entry(g).or_default();
                entry.0.push(u);
                entry.1 += match x {
                    Some(x) => Expression::from(x),
                    None => Expression::from(u),
                };
            }
            let mut used_sum = Expression::default();
            let mut used: Vec<(Variable, Expression, usize)> = Vec::new();
            for (_, (us, count)) in groups {
                let v = self.add(variable().binary());
                let sum: Expression = us.iter().copied().sum();
                self.constraints.push(constraint!(v <= sum));
                for &u in &us {
                    self.constraints.push(constraint!(u <= v));
                }
                used_sum += v;
                used.push((v, count, us.len()));
            }
            if let Some(min) = s.min_groups {
                self.constraints.push(constraint!(used_sum.clone() >= f64::from(min) * any));
            }
            if let Some(max) = s.max_groups {
                self.constraints.push(constraint!(used_sum.clone() <= f64::from(max)));
            }
            if let Some(skew) = s.max_skew {
                let low = self.add(variable().min(0));
                // `low` is at most the smallest used group's count, so at most r (Divided) or the
                // largest group's cluster count (Duplicated): an unused group's lower side must
                // allow that much, not only its own size.
                let largest = used.iter().map(|&(_, _, size)| size).max().unwrap_or(0);
                let big = if wc.divided() { r } else { largest as f64 };
                for (v, count, _) in used {
                    self.constraints.push(constraint!(count.clone() <= low + f64::from(skew)));
                    self.constraints.push(constraint!(count >= low - big * (1 - v)));
                }
            }
        }
    }

    /// Solves the program: per workload its counts and affinity group, and the optimum of the
    /// certified objective.
    fn solve(self, solver: ExactSolver) -> Result<(Vec<Counts>, Vec<usize>, f64), ExactError> {
        let Model { vars, constraints, objective, value, workloads, replicas, .. } = self;
        let problem = vars.maximise(objective);
        match solver {
            ExactSolver::MicroLp => {
                let solution = run(problem.using(good_lp::microlp), constraints)?;
                Ok(read(&solution, &value, workloads, replicas))
            }
            #[cfg(feature = "highs")]
            ExactSolver::Highs => {
                let solution = run(problem.using(good_lp::highs), constraints)?;
                Ok(read(&solution, &value, workloads, replicas))
            }
        }
    }
}

/// Per workload its counts and affinity group, and the optimum of the certified objective.
fn read(
    solution: &impl Solution,
    value: &Expression,
    workloads: Vec<WorkloadVars>,
    replicas: Vec<u64>,
) -> (Vec<Counts>, Vec<usize>, f64) {
    let optimum = solution.eval(value);
    let mut all_counts = Vec::with_capacity(workloads.len());
    let mut terms = Vec::with_capacity(workloads.len());
    for (wv, r) in workloads.into_iter().zip(replicas) {
        let mut counts = Counts::new();
        for (c, x, u) in wv.clusters {
            let on = u.is_none_or(|u| solution.value(u) > 0.5);
            let n = match x {
                Some(x) => solution.value(x).round().max(0.0) as u64,
                None => r,
            };
            if on && n > 0 {
                counts.push((c, n));
            }
        }
        let term = wv.terms.iter().position(|&g| solution.value(g) > 0.5).unwrap_or(0);
        all_counts.push(counts);
        terms.push(term);
    }
    (all_counts, terms, optimum)
}

fn run<M: SolverModel>(mut model: M, constraints: Vec<good_lp::Constraint>) -> Result<M::Solution, ExactError>
where
    M::Error: Into<ResolutionError>,
{
    for c in constraints {
        model.add_constraint(c);
    }
    model.solve().map_err(|e| ExactError::Solver(e.into().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cluster, Phase, Quantity, ReplicaSchedulingType, Workload};

    fn cluster(name: &str, cpu: u64) -> Cluster {
        let mut c = Cluster { name: name.into(), ..Cluster::default() };
        c.capacity.insert("cpu".into(), Quantity::from_units(cpu));
        c
    }

    fn workload(name: &str, replicas: u32, cpu: u64) -> Workload {
        let mut w = Workload::named(name);
        w.replicas = replicas;
        w.resources.insert("cpu".into(), Quantity::from_units(cpu));
        w
    }

    #[test]
    fn packs_what_greedy_order_cannot() {
        // Greedy in name order puts `a` (3 cpu) first and leaves 1 cpu: `b` gets nothing.
        // The optimum places b's two 2-cpu replicas instead (objective 2 > 1); the fast solver's
        // improvement step finds it too.
        let input = PlacementInput {
            clusters: vec![cluster("one", 4)],
            workloads: vec![workload("a", 1, 3), workload("b", 2, 2)],
            ..PlacementInput::default()
        };
        let fast = crate::solve(&input).expect("valid");
        let exact = solve_exact(&input, &ExactOptions::default()).expect("solved");
        assert_eq!(exact.objective, 2.0);
        assert_eq!(fast.objective, 2.0);
        assert_eq!(exact.gap, 0.0);
        let b = exact.placements.iter().find(|p| p.workload.0.ends_with("/b")).expect("b");
        assert_eq!((b.phase, b.placed), (Phase::Scheduled, 2));
        let a = exact.placements.iter().find(|p| p.workload.0.ends_with("/a")).expect("a");
        assert_eq!(a.phase, Phase::Unschedulable);
        assert!(a.message.contains("insufficient cpu"), "{}", a.message);
    }

    #[test]
    fn duplicated_copies_need_room_for_all_replicas() {
        let mut w = workload("dup", 2, 2);
        w.replica_scheduling.kind = ReplicaSchedulingType::Duplicated;
        let input = PlacementInput {
            clusters: vec![cluster("big", 4), cluster("small", 3)],
            workloads: vec![w],
            ..PlacementInput::default()
        };
        let exact = solve_exact(&input, &ExactOptions::default()).expect("solved");
        let p = &exact.placements[0];
        assert_eq!(p.decisions.len(), 1);
        assert_eq!(p.decisions[0].cluster, "big");
        assert_eq!(exact.objective, 2.0);
    }

    #[test]
    fn a_duplicated_skew_bound_leaves_room_for_the_largest_group() {
        // Two clusters in z1, one in z2; one group at most, skew 0. Both copies in z1 are
        // optimal: z2 unused must not cap the copies per group at its own size (found by the
        // property test `exact_plans_are_feasible_and_optimal`, where the fast plan did better).
        let zoned = |name: &str, zone: &str| {
            let mut c = cluster(name, 4);
            c.location.zone = Some(zone.into());
            c
        };
        let mut w = workload("dup", 1, 1);
        w.replica_scheduling.kind = ReplicaSchedulingType::Duplicated;
        w.spread_constraints.push(crate::SpreadConstraint {
            topology_key: "zone".into(),
            min_groups: None,
            max_groups: Some(1),
            max_skew: Some(0),
        });
        let input = PlacementInput {
            clusters: vec![zoned("a", "z1"), zoned("b", "z1"), zoned("c", "z2")],
            workloads: vec![w],
            ..PlacementInput::default()
        };
        let exact = solve_exact(&input, &ExactOptions::default()).expect("solved");
        let fast = crate::solve(&input).expect("valid");
        assert_eq!((exact.objective, fast.objective), (2.0, 2.0));
        let clusters: Vec<&str> = exact.placements[0].decisions.iter().map(|d| d.cluster.as_str()).collect();
        assert_eq!(clusters, ["a", "b"]);
    }

    #[test]
    fn refuses_large_programs() {
        let input = PlacementInput {
            clusters: (0..10).map(|i| cluster(&format!("c{i}"), 8)).collect(),
            workloads: (0..10).map(|i| workload(&format!("w{i}"), 3, 1)).collect(),
            ..PlacementInput::default()
        };
        let err = solve_exact(&input, &ExactOptions { max_variables: 10, ..ExactOptions::default() });
        assert!(matches!(err, Err(ExactError::TooLarge { limit: 10, .. })), "{err:?}");
    }

    #[test]
    fn invalid_input_is_a_validation_error() {
        let input =
            PlacementInput { workloads: vec![workload("a", 1, 1), workload("a", 1, 1)], ..PlacementInput::default() };
        assert!(matches!(solve_exact(&input, &ExactOptions::default()), Err(ExactError::Invalid(_))));
    }
}
