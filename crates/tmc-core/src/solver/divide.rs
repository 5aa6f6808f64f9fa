//! Replica division: largest-remainder apportionment with per-cluster floors and caps.

/// Splits `total` over slots in proportion to `weights`, starting from `mins` and never exceeding
/// `caps` (Hamilton's largest-remainder method; ties go to the lower slot index, so callers pass
/// slots in preference order).
///
/// When a slot hits its cap, what it could not take is re-apportioned among the others. Slots of
/// weight 0 get only their minimum. The result may sum to less than `total` only when every slot
/// with positive weight is at its cap.
///
/// Callers guarantee `mins[i] <= caps[i]` and `sum(mins) <= total`.
pub(crate) fn apportion(total: u64, weights: &[u64], caps: &[u64], mins: &[u64]) -> Vec<u64> {
    debug_assert!(weights.len() == caps.len() && caps.len() == mins.len());
    let mut counts: Vec<u64> = mins.to_vec();
    let mut remaining = total.saturating_sub(mins.iter().sum());
    while remaining > 0 {
        let active: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] < caps[i] && weights[i] > 0).collect();
        if active.is_empty() {
            break;
        }
        let sum_w: u128 = active.iter().map(|&i| u128::from(weights[i])).sum();
        let mut capped = false;
        let mut given = 0u64;
        let mut fractions: Vec<(u128, usize)> = Vec::with_capacity(active.len());
        for &i in &active {
            let share = u128::from(remaining) * u128::from(weights[i]);
            let quota = u64::try_from(share / sum_w).unwrap_or(u64::MAX);
            let room = caps[i] - counts[i];
            let g = quota.min(room);
            if quota >= room {
                capped = true;
            } else {
                fractions.push((share % sum_w, i));
            }
            counts[i] += g;
            given += g;
        }
        remaining -= given;
        if capped {
            // Re-apportion what is left among the slots that still have room.
            continue;
        }
        // No slot capped: the leftover (< number of active slots) goes to the largest remainders.
        fractions.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, i) in fractions.iter() {
            if remaining == 0 {
                break;
            }
            if counts[i] < caps[i] {
                counts[i] += 1;
                remaining -= 1;
            }
        }
    }
    counts
}

/// Fills slots in order, each up to its cap, on top of `mins` (Aggregated division).
pub(crate) fn fill_in_order(total: u64, caps: &[u64], mins: &[u64]) -> Vec<u64> {
    let mut counts = mins.to_vec();
    let mut remaining = total.saturating_sub(mins.iter().sum());
    for i in 0..counts.len() {
        let g = remaining.min(caps[i] - counts[i]);
        counts[i] += g;
        remaining -= g;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn two_to_one_with_two_replicas_gives_one_each() {
        assert_eq!(apportion(2, &[2, 1], &[10, 10], &[0, 0]), vec![1, 1]);
        assert_eq!(apportion(3, &[2, 1], &[10, 10], &[0, 0]), vec![2, 1]);
        assert_eq!(apportion(7, &[1, 1, 1], &[10, 10, 10], &[0, 0, 0]), vec![3, 2, 2], "ties go to the first slot");
    }

    #[test]
    fn caps_redistribute_and_mins_hold() {
        assert_eq!(apportion(10, &[1, 1], &[2, 100], &[0, 0]), vec![2, 8]);
        assert_eq!(apportion(10, &[1, 1], &[2, 3], &[0, 0]), vec![2, 3], "short when all capped");
        assert_eq!(apportion(4, &[100, 1], &[10, 10], &[0, 2]), vec![2, 2]);
        assert_eq!(apportion(5, &[0, 1], &[10, 10], &[1, 0]), vec![1, 4]);
        assert_eq!(fill_in_order(7, &[5, 5], &[0, 0]), vec![5, 2]);
    }

    proptest! {
        #[test]
        fn apportion_respects_bounds_and_sums(
            slots in proptest::collection::vec((0u64..50, 0u64..40, 0u64..3), 1..12),
            total in 0u64..300,
        ) {
            let weights: Vec<u64> = slots.iter().map(|s| s.0).collect();
            let caps: Vec<u64> = slots.iter().map(|s| s.1.max(s.2)).collect();
            let mins: Vec<u64> = slots.iter().map(|s| s.2).collect();
            prop_assume!(mins.iter().sum::<u64>() <= total);
            let counts = apportion(total, &weights, &caps, &mins);
            let sum: u64 = counts.iter().sum();
            prop_assert!(sum <= total);
            for i in 0..counts.len() {
                prop_assert!(counts[i] >= mins[i] && counts[i] <= caps[i]);
                if weights[i] == 0 { prop_assert_eq!(counts[i], mins[i]); }
            }
            let room: u64 = (0..counts.len()).filter(|&i| weights[i] > 0).map(|i| caps[i] - mins[i]).sum();
            prop_assert_eq!(sum, total.min(mins.iter().sum::<u64>() + room));
        }

        #[test]
        fn uncapped_apportion_is_within_one_of_the_quota(
            weights in proptest::collection::vec(1u64..20, 1..8),
            total in 0u64..200,
        ) {
            let n = weights.len();
            let counts = apportion(total, &weights, &vec![u64::MAX; n], &vec![0; n]);
            let w: u64 = weights.iter().sum();
            for i in 0..n {
                let quota_floor = total * weights[i] / w;
                prop_assert!(counts[i] == quota_floor || counts[i] == quota_floor + 1);
            }
            prop_assert_eq!(counts.iter().sum::<u64>(), total);
        }
    }
}
