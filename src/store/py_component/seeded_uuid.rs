//! hetida's `get_uuid_from_seed`: `random.seed(s)` then `UUID(int=random.getrandbits(128))`.
//!
//! The ids of a `.py` component's inputs and outputs come from it, and workflows point at them,
//! so they must be the very ids CPython's Mersenne Twister produces. That means CPython's
//! seeding (version 2: the bytes of `s` and their SHA-512, read as one big-endian integer, cut
//! into 32-bit words least significant first, fed to MT19937's `init_by_array`) and its
//! `getrandbits` (32-bit words, least significant first).

use sha2::{Digest, Sha512};
use uuid::Uuid;

/// MT19937's state, in 32-bit words.
const N: usize = 624;
/// The offset of the middle word in MT19937's recurrence.
const M: usize = 397;

/// The id hetida derives from `seed` (e.g. `component_input_` + the input's name).
pub fn uuid_from_seed(seed: &str) -> Uuid {
    let mut mt = Mt19937::seeded_like_python(seed.as_bytes());
    let mut bits: u128 = 0;
    for i in 0..4 {
        bits |= u128::from(mt.next_u32()) << (32 * i);
    }
    Uuid::from_u128(bits)
}

/// CPython's Mersenne Twister, only as far as seeding and drawing 32-bit words.
struct Mt19937 {
    /// The generator's state.
    state: [u32; N],
    /// The next word of `state` to hand out (tempered); `N` when all are used, so the next
    /// draw twists first.
    index: usize,
}

impl Mt19937 {
    /// `random.seed(str)`: the integer `int.from_bytes(s + sha512(s), "big")` as key words.
    fn seeded_like_python(seed: &[u8]) -> Mt19937 {
        let mut bytes = seed.to_vec();
        bytes.extend_from_slice(&Sha512::digest(seed));
        // Leading zero bytes do not count: CPython sizes the key by the integer's bit length.
        let significant = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let bytes = &bytes[significant..];
        let key: Vec<u32> = if bytes.is_empty() {
            vec![0]
        } else {
            bytes
                .rchunks(4)
                .map(|chunk| chunk.iter().fold(0u32, |w, &b| (w << 8) | u32::from(b)))
                .collect()
        };
        let mut mt = Mt19937::from_seed(19_650_218);
        mt.mix_in(&key);
        mt
    }

    fn from_seed(seed: u32) -> Mt19937 {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: N }
    }

    /// MT19937's `init_by_array`, the reference algorithm step for step.
    fn mix_in(&mut self, key: &[u32]) {
        let mt = &mut self.state;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        self.index = N;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        let mt = &mut self.state;
        for k in 0..N {
            let y = (mt[k] & 0x8000_0000) | (mt[(k + 1) % N] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            mt[k] = mt[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from CPython 3.11:
    /// `random.seed(s); print(uuid.UUID(int=random.getrandbits(128)))`.
    #[test]
    fn ids_are_the_ones_cpython_derives() {
        let long = format!("component_input_{:0200}", 7);
        for (seed, expected) in [
            ("component_input_x", "96a191dd-a756-cc14-e9f8-1b7c5cfcddca"),
            (
                "component_input_series",
                "31a7c0a2-8d35-6c57-d742-f0a8092d0c87",
            ),
            (
                "component_output_difference_quotients",
                "d5b1c017-3ddc-0aed-92b5-c367d86241b0",
            ),
            ("", "34f68880-986c-eb00-7458-f93cf5d15920"),
            (
                "component_input_größe",
                "74a92e3b-cbb5-0606-083a-f0c5072f9931",
            ),
            (
                "component_input_日本語",
                "46108fa4-70d7-c162-8c65-d734db8c8fa5",
            ),
            ("component_input_😀", "28775a31-d6b8-b9ea-2cac-0afc3532e4c0"),
            (long.as_str(), "546804d2-129a-f26a-e52d-402bc8e78b01"),
        ] {
            assert_eq!(uuid_from_seed(seed).to_string(), expected, "seed {seed:?}");
        }
    }
}
