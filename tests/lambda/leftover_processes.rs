//! Nothing the test harness starts outlives the process that started it: DynamoDB Local dies with a
//! `local-aws` killed by `kill -9` (what `cargo_lambda_recipe`'s drop does), and `make test`'s own
//! check (`tests/leftover-processes.sh`) finds a process of its run left behind, and only those.

use system_tests::processes;
use system_tests::workspace_root;
use tokio::process::Command;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn dynamodb_local_dies_with_a_killed_local_aws() {
    let dir = system_tests::local::scratch();
    let env = dir.join("local-aws.env");
    let ports = [free_port(), free_port(), free_port()];
    std::fs::write(
        &env,
        format!(
            "AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:{}\n\
             AWS_ENDPOINT_URL_S3=http://127.0.0.1:{}\n\
             AWS_ENDPOINT_URL_MEDIACONVERT=http://127.0.0.1:{}\nTABLE_NAME=leftovers\n",
            ports[0], ports[1], ports[2]
        ),
    )
    .unwrap();
    let (mut local_aws, _, _) = system_tests::local_aws(&env).await;
    let parent = local_aws.id().unwrap();
    let java: Vec<_> = processes::matching(&["DynamoDBLocal.jar", &ports[0].to_string()])
        .into_iter()
        .filter(|p| p.parent == parent)
        .collect();
    assert_eq!(java.len(), 1, "{java:?}");

    local_aws.kill().await.unwrap();
    let gone = processes::wait_until(|| !processes::alive(java[0].pid)).await;
    if !gone {
        // Not left for the next test run to find.
        let _ = Command::new("kill")
            .args(["-KILL", &java[0].pid.to_string()])
            .status()
            .await;
    }
    assert!(gone, "DynamoDB Local {java:?} outlived local-aws");
}

#[tokio::test]
async fn the_leftover_check_finds_its_runs_processes_and_only_those() {
    let check = workspace_root().join("tests/leftover-processes.sh");
    let run = format!("leftover-check-{}", std::process::id());
    let mut other = Command::new("sleep")
        .arg("60")
        .env(processes::RUN_ID, format!("{run}-other"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let clean = Command::new("bash").arg(&check).arg(&run).output().await;
    assert!(clean.unwrap().status.success(), "nothing of {run} is alive");

    let mut left = Command::new("sleep")
        .arg("60")
        .env(processes::RUN_ID, &run)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = left.id().unwrap();
    let found = Command::new("bash")
        .arg(&check)
        .arg(&run)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&found.stderr);
    assert!(!found.status.success(), "{said}");
    assert!(said.contains(&format!("{pid}: sleep 60")), "{said}");
    // It kills what it found, and nothing of another run.
    assert!(!left.wait().await.unwrap().success());
    assert!(other.try_wait().unwrap().is_none());
    other.kill().await.unwrap();
}
