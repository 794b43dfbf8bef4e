//! M4 thinning (`samples=N`): per bucket of a key's step range, its first, last, minimum and
//! maximum point, so that a line chart of the samples keeps every extreme of the full data.

/// One bucket's picks: indices of its first, last, minimum and maximum point.
struct Bucket {
    first: usize,
    last: usize,
    min: Option<usize>,
    max: Option<usize>,
}

impl Bucket {
    fn new(i: usize, v: f64) -> Self {
        let extreme = (!v.is_nan()).then_some(i);
        Bucket {
            first: i,
            last: i,
            min: extreme,
            max: extreme,
        }
    }

    fn add(&mut self, i: usize, v: f64, points: &[(u64, f64)]) {
        self.last = i;
        if v.is_nan() {
            return;
        }
        if self.min.is_none_or(|m| v < points[m].1) {
            self.min = Some(i);
        }
        if self.max.is_none_or(|m| v > points[m].1) {
            self.max = Some(i);
        }
    }

    /// The picks, extremes first, so that fewer than four samples keep the extremes.
    fn picks(&self) -> impl Iterator<Item = usize> {
        [self.min, self.max, Some(self.first), Some(self.last)]
            .into_iter()
            .flatten()
    }
}

/// Which of a key's `points` (`(step, value)` in step order) to keep so that at most `n`
/// remain: all of them when they fit, otherwise M4 over `max(1, n / 4)` equal buckets of the
/// key's step range. Returns indices into `points`, ascending, without repeats.
pub fn m4(points: &[(u64, f64)], n: usize) -> Vec<usize> {
    if points.len() <= n {
        return (0..points.len()).collect();
    }
    if n == 0 {
        return Vec::new();
    }
    let buckets = (n / 4).max(1) as u128;
    let lo = points[0].0;
    let span = u128::from(points[points.len() - 1].0 - lo) + 1;
    let bucket_of = |step: u64| u128::from(step - lo) * buckets / span;
    let mut picked = Vec::with_capacity(n);
    // Fewer than four samples: one bucket, whose extremes come before its ends.
    let mut flush = |b: &Bucket| {
        let mut picks = Vec::with_capacity(4);
        for i in b.picks() {
            if !picks.contains(&i) && picks.len() < n {
                picks.push(i);
            }
        }
        picks.sort_unstable();
        picked.extend(picks);
    };
    let mut current = (bucket_of(points[0].0), Bucket::new(0, points[0].1));
    for (i, &(step, v)) in points.iter().enumerate().skip(1) {
        let b = bucket_of(step);
        if b == current.0 {
            current.1.add(i, v, points);
        } else {
            flush(&current.1);
            current = (b, Bucket::new(i, v));
        }
    }
    flush(&current.1);
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: u64) -> Vec<(u64, f64)> {
        (0..n).map(|s| (s, (s % 7) as f64)).collect()
    }

    #[test]
    fn keeps_everything_that_fits() {
        assert_eq!(m4(&line(5), 5), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_single_spike_survives_and_the_count_is_bounded() {
        let mut points: Vec<(u64, f64)> = (0..100_000).map(|s| (s, 1.0 / (1.0 + s as f64))).collect();
        points[54_321].1 = 1000.0;
        points[77_777].1 = -5.0;
        let kept = m4(&points, 1000);
        assert!(kept.len() <= 1000, "{} samples", kept.len());
        assert!(kept.len() >= 500, "{} samples", kept.len());
        assert!(kept.contains(&54_321) && kept.contains(&77_777));
        assert_eq!((kept[0], *kept.last().unwrap()), (0, 99_999));
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn fewer_than_four_samples_keep_the_extremes() {
        let mut points = line(100);
        points[40].1 = 99.0;
        points[60].1 = -99.0;
        assert_eq!(m4(&points, 2), vec![40, 60]);
        assert_eq!(m4(&points, 1), vec![60]);
        assert!(m4(&points, 0).is_empty());
    }

    #[test]
    fn non_numbers_are_only_first_or_last() {
        let points: Vec<(u64, f64)> = (0..40).map(|s| (s, f64::NAN)).collect();
        assert_eq!(m4(&points, 4), vec![0, 39]);
    }
}
