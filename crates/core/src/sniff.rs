//! What a file is, from its first bytes: the one check every backend shares before a transcoder
//! sees an upload. A name says nothing (`song.mp3` may be a playlist, a web page or a zip); the
//! container's own signature does. Only the formats below are accepted, each by a signature that
//! leaves no room for a text format (a playlist, HTML, JSON) to pass.

use std::fmt;

/// How many bytes to read from the start of a file (or from the end of an ID3 tag) to sniff it:
/// enough for an MP4 `ftyp` box, an Ogg page's first packet, and two MPEG audio frames.
pub const SNIFF_BYTES: usize = 8192;

/// A container this pipeline accepts, as identified by its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    /// MPEG audio (layer I, II or III) frames, after an optional ID3v2 tag.
    Mp3,
    /// AAC in ADTS frames, after an optional ID3v2 tag.
    Aac,
    /// RIFF (or RF64) WAVE.
    Wav,
    /// Native FLAC (`fLaC` and a STREAMINFO block).
    Flac,
    /// Ogg whose first packet is Vorbis, Opus, FLAC or Speex.
    Ogg,
    /// ISO base media (MP4, M4A) with an audio or a general-purpose brand.
    Mp4,
}

impl AudioFormat {
    pub const ALL: [AudioFormat; 6] = [
        Self::Mp3,
        Self::Aac,
        Self::Wav,
        Self::Flac,
        Self::Ogg,
        Self::Mp4,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Mp3 => "mp3",
            Self::Aac => "aac",
            Self::Wav => "wav",
            Self::Flac => "flac",
            Self::Ogg => "ogg",
            Self::Mp4 => "mp4",
        }
    }

    /// The ffmpeg demuxer that reads exactly this container (`ffmpeg -f <demuxer>`), so that ffmpeg
    /// never guesses a format from the content.
    pub fn demuxer(self) -> &'static str {
        match self {
            Self::Mp3 => "mp3",
            Self::Aac => "aac",
            Self::Wav => "wav",
            Self::Flac => "flac",
            Self::Ogg => "ogg",
            Self::Mp4 => "mov",
        }
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the first bytes of a file say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Audio(AudioFormat),
    /// An ID3v2 tag fills the bytes read: sniff again from `offset`, where the tag ends.
    SkipTo {
        offset: u64,
    },
    NotAudio(NotAudio),
}

/// Why a file is not one of the accepted audio containers. The message is shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotAudio {
    #[error("not an audio file: it is empty")]
    Empty,
    #[error("not an audio file: it is text (a playlist, a web page or a document)")]
    Text,
    #[error("not an audio file: it is an archive or a document")]
    Archive,
    #[error(
        "not an audio file: its bytes match none of the accepted formats (MP3, AAC, WAV, FLAC, Ogg, MP4/M4A)"
    )]
    Unknown,
    #[error("not an audio file: its ID3 tag is damaged")]
    BadId3,
    /// The ID3 tags claim more bytes than the whole file holds.
    #[error(
        "not an audio file: its ID3 tag claims {} but the file is {}",
        Bytes(*tag),
        Bytes(*size)
    )]
    TagPastEnd { tag: u64, size: u64 },
    /// Nothing follows the ID3 tags (or the file's size is not known, and they reach its end).
    #[error(
        "not an audio file: its ID3 tag claims {} and no audio follows it",
        Bytes(*tag)
    )]
    NoAudioAfterTag { tag: u64 },
    #[error("not an audio file: an MP4 file whose brand is not audio")]
    NotAudioBrand,
}

impl NotAudio {
    /// Why a file whose ID3 tags end at `tag` bytes has nothing after them; `size` is the file's,
    /// if it is known.
    pub fn nothing_after_tag(tag: u64, size: Option<u64>) -> Self {
        match size {
            Some(size) if size < tag => Self::TagPastEnd { tag, size },
            _ => Self::NoAudioAfterTag { tag },
        }
    }
}

/// A number of bytes as a person reads it: `56 KiB`, `256 MiB`, `1.5 GiB`, `900 bytes`.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        match UNITS.iter().find(|(_, unit)| self.0 >= *unit) {
            Some((name, unit)) => {
                let value = self.0 as f64 / *unit as f64;
                let decimals = if value < 10.0 { 1 } else { 0 };
                write!(f, "{value:.decimals$} {name}")
            }
            None => write!(f, "{} bytes", self.0),
        }
    }
}

/// Identifies the container of `head`, the first bytes of a file (or the bytes after an ID3 tag,
/// when the previous call asked for them with [`Sniffed::SkipTo`]). `head` is at most
/// [`SNIFF_BYTES`] long in practice; shorter means the file ended.
pub fn sniff(head: &[u8]) -> Sniffed {
    if head.is_empty() {
        return Sniffed::NotAudio(NotAudio::Empty);
    }
    if let Some(tag) = id3v2_len(head) {
        return match tag {
            None => Sniffed::NotAudio(NotAudio::BadId3),
            Some(len) if len < head.len() => match sniff_after_id3(&head[len..]) {
                Sniffed::SkipTo { offset } => Sniffed::SkipTo {
                    offset: offset + len as u64,
                },
                other => other,
            },
            Some(len) => Sniffed::SkipTo { offset: len as u64 },
        };
    }
    if let Some(format) = container(head) {
        return format;
    }
    Sniffed::NotAudio(classify_other(head))
}

/// After an ID3v2 tag: frames of MPEG audio or ADTS, native FLAC, or another tag.
fn sniff_after_id3(rest: &[u8]) -> Sniffed {
    if rest.starts_with(b"ID3") {
        // A second tag: some taggers write one after another.
        return sniff(rest);
    }
    if rest.starts_with(b"fLaC") {
        return flac(rest);
    }
    match frames(rest) {
        Some(format) => Sniffed::Audio(format),
        None => Sniffed::NotAudio(classify_other(rest)),
    }
}

/// Signatures that stand at byte 0.
fn container(head: &[u8]) -> Option<Sniffed> {
    if head.len() >= 12
        && (head.starts_with(b"RIFF") || head.starts_with(b"RF64"))
        && &head[8..12] == b"WAVE"
    {
        return Some(Sniffed::Audio(AudioFormat::Wav));
    }
    if head.starts_with(b"fLaC") {
        return Some(flac(head));
    }
    if head.starts_with(b"OggS") {
        return Some(ogg(head));
    }
    if head.len() >= 8 && &head[4..8] == b"ftyp" {
        return Some(mp4(head));
    }
    frames(head).map(Sniffed::Audio)
}

/// The length of the ID3v2 tag at the start of `head`: `None` if there is none, `Some(None)` if
/// its header is damaged.
fn id3v2_len(head: &[u8]) -> Option<Option<usize>> {
    if !head.starts_with(b"ID3") {
        return None;
    }
    if head.len() < 10 {
        return Some(None);
    }
    let (major, revision, flags, size) = (head[3], head[4], head[5], &head[6..10]);
    if !(2..=4).contains(&major) || revision == 0xFF || size.iter().any(|b| b & 0x80 != 0) {
        return Some(None);
    }
    let body = size.iter().fold(0usize, |n, &b| (n << 7) | usize::from(b));
    let footer = if flags & 0x10 != 0 { 10 } else { 0 };
    Some(Some(10 + body + footer))
}

fn flac(head: &[u8]) -> Sniffed {
    // The first metadata block must be STREAMINFO (type 0), 34 bytes long.
    match head.get(4..8) {
        Some([kind, 0, 0, 34]) if kind & 0x7F == 0 => Sniffed::Audio(AudioFormat::Flac),
        _ => Sniffed::NotAudio(NotAudio::Unknown),
    }
}

fn ogg(head: &[u8]) -> Sniffed {
    // Page header: "OggS", version 0, header type with "beginning of stream", 27 bytes, then the
    // segment table; the first packet follows it.
    if head.len() < 28 || head[4] != 0 || head[5] & 0x02 == 0 {
        return Sniffed::NotAudio(NotAudio::Unknown);
    }
    let packet = 27 + usize::from(head[26]);
    let codecs: [&[u8]; 4] = [b"\x01vorbis", b"OpusHead", b"\x7FFLAC", b"Speex   "];
    match head.get(packet..) {
        Some(data) if codecs.iter().any(|c| data.starts_with(c)) => {
            Sniffed::Audio(AudioFormat::Ogg)
        }
        _ => Sniffed::NotAudio(NotAudio::Unknown),
    }
}

/// Brands of MP4 files that hold audio: the audio-only ones, and the general-purpose ones that
/// encoders (ffmpeg among them) write for audio-only MP4.
const MP4_BRANDS: &[&[u8; 4]] = &[
    b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B ", b"isom", b"iso2", b"iso4", b"iso5", b"iso6",
    b"mp41", b"mp42", b"dash",
];

fn mp4(head: &[u8]) -> Sniffed {
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if head.len() < 12 || !(16..=4096).contains(&size) || !size.is_multiple_of(4) {
        return Sniffed::NotAudio(NotAudio::Unknown);
    }
    let ftyp = &head[..size.min(head.len())];
    // The major brand, then the compatible brands; the minor version (bytes 12..16) is skipped.
    let brands = ftyp[8..12]
        .chunks_exact(4)
        .chain(ftyp.get(16..).unwrap_or_default().chunks_exact(4));
    let audio = brands
        .into_iter()
        .any(|brand| MP4_BRANDS.iter().any(|b| b.as_slice() == brand));
    if audio {
        Sniffed::Audio(AudioFormat::Mp4)
    } else {
        Sniffed::NotAudio(NotAudio::NotAudioBrand)
    }
}

/// MPEG audio or ADTS frames at byte 0: a valid header, and another valid header of the same
/// stream where the first frame ends (unless the bytes end first).
fn frames(head: &[u8]) -> Option<AudioFormat> {
    let (format, first) = frame_header(head)?;
    match head.get(first.length..) {
        Some(next) if next.len() >= 4 => {
            let (next_format, second) = frame_header(next)?;
            (next_format == format && second.stream == first.stream).then_some(format)
        }
        // The file (or the bytes read) ends within the first frame.
        _ => Some(format),
    }
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    length: usize,
    /// What stays the same from frame to frame: version, layer and sample rate.
    stream: (u8, u8, u32),
}

fn frame_header(b: &[u8]) -> Option<(AudioFormat, Frame)> {
    if b.len() < 4 || b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
        return None;
    }
    let layer = (b[1] >> 1) & 0x03;
    if layer == 0 {
        return adts_header(b).map(|f| (AudioFormat::Aac, f));
    }
    mpeg_audio_header(b).map(|f| (AudioFormat::Mp3, f))
}

fn mpeg_audio_header(b: &[u8]) -> Option<Frame> {
    // Version: 0 = MPEG 2.5, 1 = reserved, 2 = MPEG 2, 3 = MPEG 1. Layer: 1 = III, 2 = II, 3 = I.
    let version = (b[1] >> 3) & 0x03;
    let layer = (b[1] >> 1) & 0x03;
    let bitrate_index = usize::from(b[2] >> 4);
    let rate_index = usize::from((b[2] >> 2) & 0x03);
    let padding = usize::from((b[2] >> 1) & 0x01);
    // Free-format (index 0) and the forbidden index 15 are refused, as are reserved values.
    if version == 1 || bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    const RATES: [[u32; 3]; 3] = [
        [11025, 12000, 8000],  // MPEG 2.5
        [22050, 24000, 16000], // MPEG 2
        [44100, 48000, 32000], // MPEG 1
    ];
    const KBPS: [[u32; 14]; 5] = [
        [
            32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
        ], // MPEG 1, layer I
        [
            32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
        ], // MPEG 1, layer II
        [
            32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ], // MPEG 1, layer III
        [
            32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
        ], // MPEG 2/2.5, layer I
        [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160], // MPEG 2/2.5, II & III
    ];
    let sample_rate = RATES[if version == 0 {
        0
    } else {
        usize::from(version) - 1
    }][rate_index];
    let mpeg1 = version == 3;
    let table = match (mpeg1, layer) {
        (true, 3) => 0,
        (true, 2) => 1,
        (true, _) => 2,
        (false, 3) => 3,
        (false, _) => 4,
    };
    let bitrate = KBPS[table][bitrate_index - 1] * 1000;
    let length = match layer {
        3 => (12 * bitrate / sample_rate) as usize * 4 + padding * 4,
        1 if !mpeg1 => (72 * bitrate / sample_rate) as usize + padding,
        _ => (144 * bitrate / sample_rate) as usize + padding,
    };
    Some(Frame {
        length,
        stream: (version, layer, sample_rate),
    })
}

fn adts_header(b: &[u8]) -> Option<Frame> {
    if b.len() < 7 {
        return None;
    }
    let rate_index = (b[2] >> 2) & 0x0F;
    if rate_index > 12 {
        return None;
    }
    let length =
        (usize::from(b[3] & 0x03) << 11) | (usize::from(b[4]) << 3) | usize::from(b[5] >> 5);
    // A frame holds at least its 7-byte header.
    if length < 7 {
        return None;
    }
    Some(Frame {
        length,
        stream: (b[1] & 0x08, b[2] >> 6, u32::from(rate_index)),
    })
}

/// A reason for a file that is not audio, as precise as its bytes allow.
fn classify_other(head: &[u8]) -> NotAudio {
    const ARCHIVES: [&[u8]; 6] = [
        b"PK\x03\x04",
        b"%PDF",
        b"\x1F\x8B",
        b"7z\xBC\xAF",
        b"Rar!",
        b"\xD0\xCF\x11\xE0",
    ];
    if ARCHIVES.iter().any(|sig| head.starts_with(sig)) {
        return NotAudio::Archive;
    }
    if is_text(&head[..head.len().min(512)]) {
        NotAudio::Text
    } else {
        NotAudio::Unknown
    }
}

/// UTF-8 without control characters other than line breaks and tabs; a character cut off at the
/// end of the sample still counts.
fn is_text(sample: &[u8]) -> bool {
    let utf8 = match std::str::from_utf8(sample) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    utf8 && sample
        .iter()
        .all(|&b| matches!(b, b'\n' | b'\r' | b'\t') || b >= 0x20 && b != 0x7F)
}

#[cfg(test)]
mod tests {
    // The test kit links its own build of this crate; only bytes cross between the two.
    use transcoder_testkit::mp3_frames;

    use super::*;

    fn id3(body: usize) -> Vec<u8> {
        let mut tag = b"ID3\x04\x00\x00".to_vec();
        tag.extend([21, 14, 7, 0].map(|shift| ((body >> shift) & 0x7F) as u8));
        tag.resize(10 + body, 0);
        tag
    }

    fn ogg_page(packet: &[u8]) -> Vec<u8> {
        let mut page = b"OggS\x00\x02".to_vec();
        page.resize(26, 0);
        page.push(1);
        page.push(packet.len() as u8);
        page.extend_from_slice(packet);
        page
    }

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compatible.len();
        let mut head = (size as u32).to_be_bytes().to_vec();
        head.extend_from_slice(b"ftyp");
        head.extend_from_slice(major);
        head.extend_from_slice(&[0, 0, 2, 0]);
        for brand in compatible {
            head.extend_from_slice(*brand);
        }
        head.extend_from_slice(b"\x00\x00\x00\x08free");
        head
    }

    #[test]
    fn each_accepted_container_is_recognised() {
        let mut flac = b"fLaC\x80\x00\x00\x22".to_vec();
        flac.resize(42, 0);
        let mut adts = vec![0u8; 2 * 371];
        for start in [0, 371] {
            // AAC LC, 44.1 kHz, stereo, 371-byte frames.
            adts[start..start + 7].copy_from_slice(&[0xFF, 0xF1, 0x50, 0x80, 0x2E, 0x7F, 0xFC]);
        }
        let cases: Vec<(Vec<u8>, AudioFormat)> = vec![
            (mp3_frames(3), AudioFormat::Mp3),
            ([id3(100), mp3_frames(2)].concat(), AudioFormat::Mp3),
            ([id3(20), id3(20), mp3_frames(2)].concat(), AudioFormat::Mp3),
            (adts, AudioFormat::Aac),
            (b"RIFF\x24\x08\x00\x00WAVEfmt ".to_vec(), AudioFormat::Wav),
            (b"RF64\xFF\xFF\xFF\xFFWAVEds64".to_vec(), AudioFormat::Wav),
            (flac, AudioFormat::Flac),
            (ogg_page(b"\x01vorbis\x00\x00"), AudioFormat::Ogg),
            (ogg_page(b"OpusHead\x01\x02"), AudioFormat::Ogg),
            (
                ftyp(b"M4A ", &[b"M4A ", b"mp42", b"isom"]),
                AudioFormat::Mp4,
            ),
            (
                ftyp(b"isom", &[b"isom", b"iso2", b"mp41"]),
                AudioFormat::Mp4,
            ),
        ];
        for (bytes, format) in cases {
            assert_eq!(sniff(&bytes), Sniffed::Audio(format), "{format}");
        }
    }

    #[test]
    fn playlists_pages_and_archives_named_like_audio_are_refused() {
        let cases: [(&[u8], NotAudio); 8] = [
            (
                b"#EXTM3U\n#EXTINF:5.0,\n../alice/song.mp3\n",
                NotAudio::Text,
            ),
            (b"#EXTM3U\n#EXTINF:5.0,\n/etc/passwd\n", NotAudio::Text),
            (
                b"<!DOCTYPE html><html><body>hi</body></html>",
                NotAudio::Text,
            ),
            (b"ffconcat version 1.0\nfile 'a.mp3'\n", NotAudio::Text),
            (b"PK\x03\x04\x14\x00\x00\x00", NotAudio::Archive),
            (b"%PDF-1.7\n", NotAudio::Archive),
            (b"", NotAudio::Empty),
            (b"\x00\x01\x02\x03\xFE\xFD", NotAudio::Unknown),
        ];
        for (bytes, reason) in cases {
            assert_eq!(
                sniff(bytes),
                Sniffed::NotAudio(reason),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn near_misses_of_each_signature_are_refused() {
        let mut bad_second_frame = mp3_frames(2);
        bad_second_frame[417 + 1] = 0x00;
        let mut vorbis_without_bos = ogg_page(b"\x01vorbis");
        vorbis_without_bos[5] = 0;
        let cases: Vec<Vec<u8>> = vec![
            bad_second_frame,
            b"RIFF\x24\x08\x00\x00AVI LIST".to_vec(),
            b"fLaC\x04\x00\x00\x22".to_vec(),
            ogg_page(b"\x80theora"),
            vorbis_without_bos,
            ftyp(b"qt  ", &[b"qt  "]),
            ftyp(b"avif", &[b"mif1", b"avif"]),
            // MPEG audio with the reserved version and a forbidden bitrate index.
            vec![0xFF, 0xEB, 0x90, 0x64, 0, 0, 0, 0],
            vec![0xFF, 0xFB, 0xF0, 0x64, 0, 0, 0, 0],
            // A damaged ID3 header: a size byte with its high bit set.
            b"ID3\x04\x00\x00\x80\x00\x00\x00".to_vec(),
            // An ID3 tag in front of a playlist.
            [id3(10), b"#EXTM3U\n/etc/passwd\n".to_vec()].concat(),
        ];
        for bytes in cases {
            assert!(
                matches!(sniff(&bytes), Sniffed::NotAudio(_)),
                "{:?}: {:?}",
                &bytes[..bytes.len().min(16)],
                sniff(&bytes)
            );
        }
    }

    #[test]
    fn a_tag_longer_than_the_bytes_read_asks_for_the_bytes_after_it() {
        let tag = id3(SNIFF_BYTES * 4);
        assert_eq!(
            sniff(&tag[..SNIFF_BYTES]),
            Sniffed::SkipTo {
                offset: tag.len() as u64
            }
        );
        // A second tag that again outruns the bytes read: the offset counts both.
        let two = [id3(20), id3(SNIFF_BYTES)].concat();
        assert_eq!(
            sniff(&two[..SNIFF_BYTES]),
            Sniffed::SkipTo {
                offset: two.len() as u64
            }
        );
        assert_eq!(sniff(&mp3_frames(2)), Sniffed::Audio(AudioFormat::Mp3));
    }

    #[test]
    fn no_input_panics_the_sniffer() {
        // Every prefix of every signature, and every two-byte frame-sync variation.
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for whole in [
            mp3_frames(2),
            id3(4),
            ogg_page(b"OpusHead"),
            ftyp(b"M4A ", &[]),
        ] {
            inputs.extend((0..whole.len().min(64)).map(|n| whole[..n].to_vec()));
        }
        for b1 in 0..=255u8 {
            for b2 in [0x00, 0x10, 0x90, 0xF0, 0xFC] {
                inputs.push(vec![0xFF, b1, b2, 0x00, 0x00, 0x00, 0x00]);
            }
        }
        for bytes in inputs {
            let _ = sniff(&bytes);
        }
        assert_eq!(sniff(b"ID3"), Sniffed::NotAudio(NotAudio::BadId3));
    }
}
