//! `Paced`: jobs spaced at the transcoder's rate, and one too far off refused at once.

use std::time::Duration;

use transcoder_core::*;
use transcoder_testkit::*;

fn job(n: usize) -> TranscodeJob {
    let owner = transcoder_core::Owner::new("alice").unwrap();
    let key = transcoder_core::ObjectKey::new(format!("media/alice/{n}.mp3")).unwrap();
    TranscodeJob::plan(
        "b",
        key,
        "1",
        owner,
        &format!("{n}.mp3"),
        "transcoded/",
        &transcoder_core::OutputFormat::DEFAULT,
    )
}

#[tokio::test(start_paused = true)]
async fn jobs_are_spaced_at_the_rate_and_one_too_far_off_is_refused_at_once() {
    let paced = Paced::new(
        FakeTranscoder::default(),
        Some(Duration::from_millis(500)),
        Duration::from_secs(2),
    );
    let started = tokio::time::Instant::now();
    let mut at = Vec::new();
    for n in 0..5 {
        paced.start_job(&job(n)).await.unwrap();
        at.push(started.elapsed().as_millis());
    }
    // Each half a second after the last (the fake takes 10 ms); the paused clock makes
    // this exact.
    assert_eq!(at, [10, 510, 1010, 1510, 2010]);
    // Five more at once: the turns up to two seconds ahead are taken, the rest refused.
    let ahead = futures::future::join_all((5..10).map(|n| {
        let job = job(n);
        let paced = &paced;
        async move { paced.start_job(&job).await }
    }))
    .await;
    let refused = ahead.iter().filter(|r| r.is_err()).count();
    assert_eq!(refused, 1, "{ahead:?}");
    assert_eq!(paced.inner().jobs.lock().unwrap().len(), 9);
}

#[tokio::test(start_paused = true)]
async fn without_a_rate_every_job_goes_at_once() {
    let paced = Paced::new(FakeTranscoder::default(), None, Duration::ZERO);
    let started = tokio::time::Instant::now();
    for n in 0..20 {
        paced.start_job(&job(n)).await.unwrap();
    }
    // Only the fake's own 10 ms a job.
    assert_eq!(started.elapsed(), Duration::from_millis(200));
}
