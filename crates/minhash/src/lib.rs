//! The MinHash signature kernel of kiln's `dedup.minhash`: for each of a document's
//! shingle hashes `x` and each permutation `(a, b)`, `(a·x + b) mod (2^61 − 1)`, keeping
//! the minimum per permutation. With datatrove's 14 bands × 8 rows that is 112 modular
//! multiply-adds per word of text, most of the step's time.
//!
//! On x86-64 with AVX-512 (F, DQ, VL) or AVX2 the product is formed from 32-bit limbs,
//! which the compiler turns into vector multiplies (`vpmuludq`) over 8 or 4 permutations
//! at once; [`multiversion`] compiles that loop for each and [`fold`] picks one at run
//! time, so the binary still runs on any x86-64. Elsewhere, and on older x86-64, a
//! scalar loop uses one widening 64 × 64 → 128 multiply per value (the limbs are slower
//! there). Every path computes the same residues: the signature does not depend on the
//! machine (tested against the plain `u128` formula).

/// The Mersenne prime `2^61 − 1`: the permutations' modulus.
pub const MERSENNE: u64 = (1 << 61) - 1;

/// `x mod (2^61 − 1)`: a shingle's 64-bit hash as [`fold`] takes it, and the last step
/// of every permutation.
#[inline(always)]
pub fn reduce(x: u64) -> u64 {
    let t = (x & MERSENNE) + (x >> 61);
    if t >= MERSENNE { t - MERSENNE } else { t }
}

/// `(a·x + b) mod (2^61 − 1)` for `x, a, b < 2^61 − 1`, with one widening multiply.
/// Since `2^61 ≡ 1`, the product's bits above 61 fold onto the ones below.
#[inline(always)]
fn permute_wide(x: u64, (a, b): (u64, u64)) -> u64 {
    let v = u128::from(a) * u128::from(x);
    let (lo, hi) = (v as u64, (v >> 64) as u64);
    // v < 2^122, so hi < 2^58 and `hi << 3` cannot overflow: the sum is below 2^62 + 2^61.
    reduce((lo & MERSENNE) + ((hi << 3) | (lo >> 61)) + b)
}

/// The same value from 32-bit limbs: every multiply is 32 × 32 → 64, which vectorizes.
/// With `x = x1·2^32 + x0` and `a = a1·2^32 + a0` (x1, a1 < 2^29):
/// `a·x = a1x1·2^64 + (a1x0 + a0x1)·2^32 + a0x0`, and modulo `2^61 − 1`, `2^64 ≡ 8` and
/// `m·2^32 ≡ (m >> 29) + (m mod 2^29)·2^32`. Each term is below `2^61` but the last
/// (below `2^64`, folded once), so their sum with `b` stays below `2^63`.
#[inline(always)]
fn permute_limbs(x: u64, (a, b): (u64, u64)) -> u64 {
    const LOW32: u64 = 0xffff_ffff;
    const LOW29: u64 = (1 << 29) - 1;
    let (x0, x1) = (x & LOW32, x >> 32);
    let (a0, a1) = (a & LOW32, a >> 32);
    let lo = a0 * x0;
    let mid = a1 * x0 + a0 * x1;
    let hi = a1 * x1;
    reduce((hi << 3) + (mid >> 29) + ((mid & LOW29) << 32) + (lo & MERSENNE) + (lo >> 61) + b)
}

/// Lowers `sig[i]` to the smallest `(a_i·x + b_i) mod (2^61 − 1)` over the hashes `xs`,
/// where `perms[i] = (a_i, b_i)`. Every `x`, `a_i` and `b_i` must be below `2^61 − 1`
/// ([`reduce`] a hash first); `sig` and `perms` have the same length.
pub fn fold(xs: &[u64], perms: &[(u64, u64)], sig: &mut [u64]) {
    debug_assert_eq!(perms.len(), sig.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return fold_limbs(xs, perms, sig);
    }
    fold_wide(xs, perms, sig)
}

fn fold_wide(xs: &[u64], perms: &[(u64, u64)], sig: &mut [u64]) {
    for &x in xs {
        for (s, p) in sig.iter_mut().zip(perms) {
            let v = permute_wide(x, *p);
            *s = if v < *s { v } else { *s };
        }
    }
}

/// [`fold`] with 32-bit limbs, compiled for AVX-512 and AVX2 (its baseline version is
/// not called: [`fold`] takes [`fold_wide`] there).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512dq+avx512vl", "x86_64+avx2"))]
fn fold_limbs(xs: &[u64], perms: &[(u64, u64)], sig: &mut [u64]) {
    for &x in xs {
        for (s, p) in sig.iter_mut().zip(perms) {
            let v = permute_limbs(x, *p);
            *s = if v < *s { v } else { *s };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: u64, (a, b): (u64, u64)) -> u64 {
        ((u128::from(a) * u128::from(x) + u128::from(b)) % u128::from(MERSENNE)) as u64
    }

    /// SplitMix64: a fixed stream of test values.
    fn values(seed: u64, n: usize) -> Vec<u64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            })
            .collect()
    }

    #[test]
    fn both_forms_are_the_residue_at_the_edges_and_at_random() {
        let big = MERSENNE - 1;
        let mut cases = vec![
            (big, (big, big)),
            (big, (1, 0)),
            (0, (big, big)),
            (12345, (big, 7)),
        ];
        let r = values(7, 30_000);
        for c in r.chunks_exact(3) {
            cases.push((reduce(c[0]), (reduce(c[1]), reduce(c[2]))));
        }
        for (x, p) in cases {
            assert_eq!(permute_wide(x, p), reference(x, p), "{x} {p:?}");
            assert_eq!(permute_limbs(x, p), reference(x, p), "{x} {p:?}");
        }
        for x in [0, MERSENNE - 1, MERSENNE, MERSENNE + 1, u64::MAX] {
            assert_eq!(reduce(x), x % MERSENNE);
        }
    }

    #[test]
    fn every_path_gives_the_same_signature() {
        let perms: Vec<(u64, u64)> = values(1, 224)
            .chunks_exact(2)
            .map(|p| (p[0] % (MERSENNE - 1) + 1, p[1] % MERSENNE))
            .collect();
        let xs: Vec<u64> = values(2, 1000).into_iter().map(reduce).collect();
        let want: Vec<u64> = perms
            .iter()
            .map(|&p| {
                xs.iter()
                    .map(|&x| reference(x, p))
                    .min()
                    .unwrap_or(u64::MAX)
            })
            .collect();
        for f in [fold, fold_wide, fold_limbs] {
            let mut sig = vec![u64::MAX; perms.len()];
            f(&xs[..600], &perms, &mut sig);
            f(&xs[600..], &perms, &mut sig);
            assert_eq!(sig, want);
        }
    }
}
