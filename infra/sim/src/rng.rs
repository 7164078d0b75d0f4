//! A small seeded PRNG and hash (splitmix64): everything random in the simulator comes from
//! here, so one seed reproduces one portal and one sequence of faults on every machine.

/// Mixes one 64-bit word (the splitmix64 finaliser): consecutive inputs give unrelated outputs.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a sequence of words into one, order-sensitively.
pub fn hash(words: &[u64]) -> u64 {
    words
        .iter()
        .fold(0x51_7C_C1_B7_27_22_0A_95, |acc, w| mix(acc ^ mix(*w)))
}

/// FNV-1a of a string, to turn names (types, properties) into hash words.
pub const fn tag(s: &str) -> u64 {
    let bytes = s.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
        i += 1;
    }
    h
}

/// A uniform draw in `[0, n)` from a hash word (`n` > 0; the slight modulo bias is harmless here).
pub fn below(word: u64, n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        word % n
    }
}

/// A uniform draw in `[0, 1)` from a hash word.
pub fn unit(word: u64) -> f64 {
    (word >> 11) as f64 / (1u64 << 53) as f64
}

/// A sequential generator for draws that depend on order (faults, jitter, mutation picks).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        below(self.next_u64(), n)
    }

    pub fn unit(&mut self) -> f64 {
        unit(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_unit_in_range() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..100 {
            let x = a.unit();
            assert_eq!(x, b.unit());
            assert!((0.0..1.0).contains(&x));
        }
        assert_ne!(SplitMix64::new(8).next_u64(), SplitMix64::new(7).next_u64());
    }

    #[test]
    fn hash_is_order_sensitive() {
        assert_ne!(hash(&[1, 2]), hash(&[2, 1]));
        assert_eq!(hash(&[tag("deals"), 3]), hash(&[tag("deals"), 3]));
    }
}
