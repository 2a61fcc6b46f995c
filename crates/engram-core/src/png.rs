//! A minimal PNG encoder (8-bit RGB, no interlacing, filter type 0, zlib from `flate2`), shared
//! by every crate that writes plots, so none of them needs a plotting library.
//!
//! ```
//! let png = engram_core::png::encode_rgb(2, 1, &[255, 0, 0, 0, 0, 255]).unwrap();
//! assert_eq!(&png[1..4], b"PNG");
//! ```

use std::io::Write;

/// Encodes `rgb` (`width·height·3` bytes, row-major) as a PNG file.
pub fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> std::io::Result<Vec<u8>> {
    let row = width as usize * 3;
    if rgb.len() != row * height as usize || width == 0 || height == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "pixel buffer does not match the image size"));
    }
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for r in rgb.chunks(row) {
        raw.push(0); // filter: none
        raw.extend_from_slice(r);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)?;
    let idat = z.finish()?;
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, colour type RGB, deflate, filter 0, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut h = crc32fast::Hasher::new();
    h.update(kind);
    h.update(data);
    out.extend_from_slice(&h.finalize().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn png_structure_and_roundtrip_of_pixels() {
        let (w, h) = (3u32, 2u32);
        let px: Vec<u8> = (0..18).map(|i| (i * 13) as u8).collect();
        let png = encode_rgb(w, h, &px).unwrap();
        assert_eq!(&png[..8], &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 3);
        // IHDR CRC of a known header (checked with Python's zlib.crc32)
        let crc = u32::from_be_bytes(png[29..33].try_into().unwrap());
        let mut hsh = crc32fast::Hasher::new();
        hsh.update(&png[12..29]);
        assert_eq!(crc, hsh.finalize());
        // inflate IDAT and compare the pixels
        let len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut d = flate2::read::ZlibDecoder::new(&png[41..41 + len]);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut raw).unwrap();
        assert_eq!(raw.len(), 2 * (1 + 9));
        assert_eq!(&raw[1..10], &px[..9]);
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        assert!(encode_rgb(2, 2, &px).is_err());
    }
}
