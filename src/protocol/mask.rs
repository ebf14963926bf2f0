//! The XOR masking of RFC 6455 section 5.3.

/// XORs `data` with `mask`, where `data` starts `offset` bytes into the frame
/// payload (a payload arrives in pieces, so the mask position carries over).
///
/// Works eight bytes at a time; the per-byte loop would dominate the cost of
/// large messages.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let rotated = {
        let mut m = [0u8; 4];
        for (i, b) in m.iter_mut().enumerate() {
            *b = mask[(offset + i) & 3];
        }
        m
    };
    let wide = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= rotated[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= mask[(offset + i) & 3];
        }
    }

    #[test]
    fn matches_bytewise_masking_at_every_offset_and_length() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            for offset in 0..8 {
                let original: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
                let mut fast = original.clone();
                let mut slow = original.clone();
                apply_mask(&mut fast, mask, offset);
                naive(&mut slow, mask, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }
}
