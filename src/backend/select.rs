//! Backend selection: which backend a new connection goes to. Pure functions over a view of
//! the candidates; no sockets, no clocks. The caller says which candidates are eligible
//! (not yet tried for this connection, and - once health checks exist - in a state that
//! takes new connections).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

use crate::config::Balance;
use crate::health::state::State;

/// What selection needs to know of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Effective weight (configured weight, scaled, reduced during slow start), at least 1.
    pub weight: u32,
    /// Connections it has now.
    pub active: usize,
    /// Its health state.
    pub state: State,
}

/// The selection state of one balancing algorithm.
#[derive(Debug)]
pub struct Selector {
    kind: Balance,
    /// Where the fair tie-break of least-connections starts next.
    next: AtomicUsize,
    /// Smooth weighted round-robin current weights, by candidate index.
    smooth: Mutex<Vec<i64>>,
}

impl Selector {
    /// A selector for `kind`.
    pub fn new(kind: Balance) -> Self {
        Self {
            kind,
            next: AtomicUsize::new(0),
            smooth: Mutex::new(Vec::new()),
        }
    }

    /// The algorithm.
    pub fn kind(&self) -> Balance {
        self.kind
    }

    /// Pick one of the eligible candidates, or `None` if none is. `rng` is the caller's
    /// source of randomness (seeded in tests).
    pub fn pick(
        &self,
        cands: &[Candidate],
        eligible: impl Fn(usize) -> bool,
        rng: &mut impl Rng,
    ) -> Option<usize> {
        match self.kind {
            Balance::LeastConnections => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                least_connections(cands, &eligible, start)
            }
            Balance::RoundRobin => {
                // A poisoned lock only means another pick panicked mid-update; the weights
                // are still usable numbers.
                let mut state = self.smooth.lock().unwrap_or_else(|e| e.into_inner());
                smooth_round_robin(cands, &eligible, &mut state)
            }
            Balance::RandomTwo => random_two(cands, &eligible, rng),
        }
    }
}

/// Lower load first: compares `active / weight` without division.
fn less_loaded(a: Candidate, b: Candidate) -> std::cmp::Ordering {
    let la = a.active as u128 * u128::from(b.weight);
    let lb = b.active as u128 * u128::from(a.weight);
    la.cmp(&lb)
}

/// The eligible candidate with the fewest connections per weight. Among equals, the first
/// found scanning from `start` (mod len), so ties rotate between callers.
pub fn least_connections(
    cands: &[Candidate],
    eligible: impl Fn(usize) -> bool,
    start: usize,
) -> Option<usize> {
    let n = cands.len();
    if n == 0 {
        return None;
    }
    let mut best: Option<usize> = None;
    for k in 0..n {
        let i = (start + k) % n;
        if !eligible(i) {
            continue;
        }
        best = match best {
            Some(b) if less_loaded(cands[i], cands[b]).is_lt() => Some(i),
            Some(b) => Some(b),
            None => Some(i),
        };
    }
    best
}

/// Smooth weighted round-robin (as nginx): every eligible candidate gains its weight, the
/// largest current weight wins and pays the total back. Spreads a 5:1:1 set as
/// a a b a c a a rather than a a a a a b c.
pub fn smooth_round_robin(
    cands: &[Candidate],
    eligible: impl Fn(usize) -> bool,
    current: &mut Vec<i64>,
) -> Option<usize> {
    if current.len() != cands.len() {
        current.clear();
        current.resize(cands.len(), 0);
    }
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    for (i, c) in cands.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        let w = i64::from(c.weight);
        current[i] += w;
        total += w;
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let b = best?;
    current[b] -= total;
    Some(b)
}

/// Power of two choices: two distinct eligible candidates drawn with probability
/// proportional to weight; the less loaded one wins (the first drawn on a tie).
pub fn random_two(
    cands: &[Candidate],
    eligible: impl Fn(usize) -> bool,
    rng: &mut impl Rng,
) -> Option<usize> {
    let total: u64 = (0..cands.len())
        .filter(|&i| eligible(i))
        .map(|i| u64::from(cands[i].weight))
        .sum();
    if total == 0 {
        return None;
    }
    let draw = |rng: &mut dyn rand::RngCore, skip: Option<usize>| -> Option<usize> {
        let total = total - skip.map_or(0, |s| u64::from(cands[s].weight));
        if total == 0 {
            return None;
        }
        let mut x = rng.random_range(0..total);
        for (i, c) in cands.iter().enumerate() {
            if !eligible(i) || Some(i) == skip {
                continue;
            }
            let w = u64::from(c.weight);
            if x < w {
                return Some(i);
            }
            x -= w;
        }
        None
    };
    let first = draw(rng, None)?;
    let Some(second) = draw(rng, Some(first)) else {
        return Some(first);
    };
    if less_loaded(cands[second], cands[first]).is_lt() {
        Some(second)
    } else {
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn c(weight: u32, active: usize) -> Candidate {
        Candidate {
            weight,
            active,
            state: State::Up,
        }
    }

    #[test]
    fn least_connections_prefers_lowest_load_per_weight() {
        let cands = [c(1, 5), c(1, 2), c(1, 3)];
        assert_eq!(least_connections(&cands, |_| true, 0), Some(1));
        // weight 3 with 6 conns (2 per weight) beats weight 1 with 3.
        let cands = [c(1, 3), c(3, 6)];
        assert_eq!(least_connections(&cands, |_| true, 0), Some(1));
        // Ineligible candidates are skipped.
        let cands = [c(1, 0), c(1, 9)];
        assert_eq!(least_connections(&cands, |i| i != 0, 0), Some(1));
        assert_eq!(least_connections(&cands, |_| false, 0), None);
        assert_eq!(least_connections(&[], |_| true, 0), None);
    }

    #[test]
    fn least_connections_ties_rotate() {
        let cands = [c(1, 4), c(1, 4), c(1, 4)];
        let picks: Vec<_> = (0..6)
            .map(|s| least_connections(&cands, |_| true, s))
            .collect();
        assert_eq!(
            picks,
            [Some(0), Some(1), Some(2), Some(0), Some(1), Some(2)]
        );
    }

    #[test]
    fn selector_spreads_equal_new_connections_evenly() {
        // Connections opened one after another, each adding to the chosen backend's count.
        let sel = Selector::new(Balance::LeastConnections);
        let mut cands = vec![c(1, 0), c(1, 0), c(1, 0)];
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..300 {
            let i = sel.pick(&cands, |_| true, &mut rng).expect("pick");
            cands[i].active += 1;
        }
        assert!(cands.iter().all(|c| c.active == 100), "{cands:?}");
    }

    #[test]
    fn smooth_round_robin_follows_weights_and_interleaves() {
        let cands = [c(5, 0), c(1, 0), c(1, 0)];
        let mut state = Vec::new();
        let seq: Vec<usize> = (0..7)
            .map(|_| smooth_round_robin(&cands, |_| true, &mut state).expect("pick"))
            .collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
        // Over many rounds the shares are exact.
        let mut counts = [0; 3];
        for _ in 0..700 {
            counts[smooth_round_robin(&cands, |_| true, &mut state).expect("pick")] += 1;
        }
        assert_eq!(counts, [500, 100, 100]);
    }

    #[test]
    fn round_robin_skips_ineligible_and_resizes() {
        let cands = [c(1, 0), c(1, 0), c(1, 0)];
        let mut state = vec![0; 5];
        let seq: Vec<usize> = (0..4)
            .map(|_| smooth_round_robin(&cands, |i| i != 1, &mut state).expect("pick"))
            .collect();
        assert_eq!(seq, [0, 2, 0, 2]);
        assert_eq!(state.len(), 3);
        assert_eq!(smooth_round_robin(&cands, |_| false, &mut state), None);
    }

    #[test]
    fn random_two_picks_the_less_loaded_of_two() {
        let mut rng = StdRng::seed_from_u64(7);
        // With two candidates both are always drawn: the less loaded always wins.
        let cands = [c(1, 10), c(1, 1)];
        for _ in 0..100 {
            assert_eq!(random_two(&cands, |_| true, &mut rng), Some(1));
        }
        // A single eligible candidate is returned.
        assert_eq!(random_two(&cands, |i| i == 0, &mut rng), Some(0));
        assert_eq!(random_two(&cands, |_| false, &mut rng), None);
    }

    #[test]
    fn random_two_follows_weights_when_idle() {
        let mut rng = StdRng::seed_from_u64(11);
        let cands = [c(3, 0), c(1, 0), c(0, 0)];
        let mut counts = [0usize; 3];
        for _ in 0..10_000 {
            counts[random_two(&cands, |_| true, &mut rng).expect("pick")] += 1;
        }
        // Equal load: the first drawn wins, so shares follow the weights (3:1), never 0.
        assert_eq!(counts[2], 0);
        assert!((7_000..8_000).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn random_two_spreads_load_evenly() {
        let sel = Selector::new(Balance::RandomTwo);
        let mut cands = vec![c(1, 0); 3];
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..3000 {
            let i = sel.pick(&cands, |_| true, &mut rng).expect("pick");
            cands[i].active += 1;
        }
        let max = cands.iter().map(|c| c.active).max().unwrap_or(0);
        let min = cands.iter().map(|c| c.active).min().unwrap_or(0);
        assert!(max - min <= 30, "{cands:?}");
    }
}
