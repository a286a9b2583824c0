//! `identify` and `examine`: what an upload is, from as few ranged reads as its bytes allow.

use transcoder_core::*;
use transcoder_testkit::*;

fn counting(key: &str, bytes: Vec<u8>) -> RecordingSource<MemorySource> {
    RecordingSource::new(MemorySource::default().with(key, bytes))
}

fn upload(key: &str) -> SourceObject {
    SourceObject {
        bucket: "bucket".into(),
        key: ObjectKey::new(key).unwrap(),
        etag: None,
        size: None,
    }
}

fn id3(body: usize) -> Vec<u8> {
    let mut tag = b"ID3\x04\x00\x00".to_vec();
    tag.extend([21, 14, 7, 0].map(|shift| ((body >> shift) & 0x7F) as u8));
    tag.resize(10 + body, 0);
    tag
}

#[tokio::test]
async fn one_read_identifies_a_file_and_a_playlist_is_not_audio() {
    let mp3 = counting("a.mp3", mp3_frames(40));
    assert_eq!(
        identify(&mp3, &upload("a.mp3")).await.unwrap(),
        Ok(AudioFormat::Mp3)
    );
    assert_eq!(mp3.ranges(), [(0, SNIFF_BYTES)]);

    let playlist = counting(
        "b.mp3",
        b"#EXTM3U\n#EXTINF:5.0,\n../alice/song.mp3\n".to_vec(),
    );
    assert_eq!(
        identify(&playlist, &upload("b.mp3")).await.unwrap(),
        Err(NotAudio::Text)
    );
}

#[tokio::test]
async fn the_first_read_brings_the_metadata_and_no_read_is_added() {
    let source = RecordingSource::new(
        MemorySource::default()
            .with("a.mp3", mp3_frames(40))
            .with_metadata("a.mp3", &[("outputs", "mp3:128")]),
    );
    let examined = examine(&source, &upload("a.mp3")).await.unwrap();
    assert_eq!(examined.format, Ok(AudioFormat::Mp3));
    assert_eq!(examined.metadata["outputs"], "mp3:128");
    assert_eq!(source.ranges(), [(0, SNIFF_BYTES)]);
    let tagged = counting("t.mp3", [id3(SNIFF_BYTES * 3), mp3_frames(2)].concat());
    let examined = examine(&tagged, &upload("t.mp3")).await.unwrap();
    assert_eq!(examined.format, Ok(AudioFormat::Mp3));
    assert!(examined.metadata.is_empty());
    assert_eq!(tagged.ranges().len(), 2);
}

#[tokio::test]
async fn a_large_tag_is_skipped_with_a_second_read_where_it_ends() {
    let tag = id3(SNIFF_BYTES * 3);
    let source = counting("c.mp3", [tag.clone(), mp3_frames(2)].concat());
    assert_eq!(
        identify(&source, &upload("c.mp3")).await.unwrap(),
        Ok(AudioFormat::Mp3)
    );
    assert_eq!(
        source.ranges(),
        [(0, SNIFF_BYTES), (tag.len() as u64, SNIFF_BYTES)]
    );
}

#[tokio::test]
async fn tags_behind_tags_are_followed_a_bounded_number_of_times() {
    let tags: Vec<u8> = (0..MAX_READS + 1)
        .flat_map(|_| id3(SNIFF_BYTES * 2))
        .collect();
    let source = counting("d.mp3", [tags, mp3_frames(2)].concat());
    assert_eq!(
        identify(&source, &upload("d.mp3")).await.unwrap(),
        Err(NotAudio::BadId3)
    );
    assert_eq!(source.ranges().len(), MAX_READS);
}

#[tokio::test]
async fn a_tag_with_nothing_after_it_says_so_and_a_missing_file_is_gone() {
    let tag = id3(SNIFF_BYTES * 2);
    let source = counting("e.mp3", tag.clone());
    assert_eq!(
        identify(&source, &upload("e.mp3")).await.unwrap(),
        Err(NotAudio::NoAudioAfterTag {
            tag: tag.len() as u64
        })
    );
    // A header that claims 256 MiB in a 56 KiB file, its size known from the event.
    let mut bomb = b"ID3\x04\x00\x00\x7F\x7F\x7F\x7F".to_vec();
    bomb.resize(56 * 1024, 0);
    let source = counting("f.mp3", bomb.clone());
    let sized = SourceObject {
        size: Some(56 * 1024),
        ..upload("f.mp3")
    };
    let reason = identify(&source, &sized).await.unwrap().unwrap_err();
    assert_eq!(
        reason.to_string(),
        "not an audio file: its ID3 tag claims 256 MiB but the file is 56 KiB"
    );
    // A short first read tells the size too.
    let small = counting("g.mp3", bomb[..1000].to_vec());
    let reason = identify(&small, &upload("g.mp3"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        reason.to_string(),
        "not an audio file: its ID3 tag claims 256 MiB but the file is 1000 bytes"
    );
    // Without the size, the reason still names the tag rather than calling the file empty.
    let reason = identify(&source, &upload("f.mp3"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        reason.to_string(),
        "not an audio file: its ID3 tag claims 256 MiB and no audio follows it"
    );
    assert!(matches!(
        identify(&source, &upload("missing.mp3")).await,
        Err(SourceError::Gone { .. })
    ));
}
