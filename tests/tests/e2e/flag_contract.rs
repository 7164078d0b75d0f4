//! The incremental-sync flag's contract, one scenario against both adapters: SQLite (embedded
//! mode) and the seed's SSM parameter on the moto emulator. `get` is `Ok(None)` for a missing
//! parameter and `Err` only when the flag cannot be read; `set` stores the raw value verbatim;
//! `read_decision` applies the seed's vocabulary (`parse_flag`) and never fails.

use aws::{AwsNames, SsmFlag};
use common::ports::flag::{parse_flag, read_decision, FlagDecision, FlagSource, FLAG_PARAMETER};
use embedded::{Db, EmbeddedFlag};
use hubsync_tests::moto::Moto;

/// Raw values and what they decide: the vocabulary ignores case and surrounding blanks; anything
/// else is unrecognised and comes back as stored.
fn cases() -> Vec<(&'static str, FlagDecision)> {
    vec![
        ("true", FlagDecision::On),
        ("false", FlagDecision::Off),
        ("1", FlagDecision::On),
        ("0", FlagDecision::Off),
        ("YES", FlagDecision::On),
        ("No", FlagDecision::Off),
        ("Enabled", FlagDecision::On),
        ("disabled", FlagDecision::Off),
        (" yes ", FlagDecision::On),
        ("\tFALSE\n", FlagDecision::Off),
        ("on", FlagDecision::Unrecognized("on".into())),
        ("off", FlagDecision::Unrecognized("off".into())),
        ("y", FlagDecision::Unrecognized("y".into())),
        ("2", FlagDecision::Unrecognized("2".into())),
        ("true-ish", FlagDecision::Unrecognized("true-ish".into())),
        (" maybe ", FlagDecision::Unrecognized(" maybe ".into())),
    ]
}

async fn scenario(f: &dyn FlagSource) -> anyhow::Result<()> {
    // Missing: off, silently.
    assert_eq!(f.get().await?, None, "no parameter yet");
    let missing = read_decision(f).await;
    assert_eq!(missing, FlagDecision::Missing);
    assert!(!missing.incremental());

    for (raw, want) in cases() {
        f.set(raw).await?;
        let got = f.get().await?;
        assert_eq!(got.as_deref(), Some(raw), "stored verbatim");
        assert_eq!(parse_flag(raw), want, "the vocabulary, {raw:?}");
        let decided = read_decision(f).await;
        assert_eq!(decided, want, "read_decision of {raw:?}");
        assert_eq!(decided.incremental(), want == FlagDecision::On, "{raw:?}");
    }

    // The last write wins.
    f.set("enabled").await?;
    f.set("disabled").await?;
    assert_eq!(f.get().await?.as_deref(), Some("disabled"));
    assert_eq!(read_decision(f).await, FlagDecision::Off);
    f.set("true").await?;
    assert_eq!(read_decision(f).await, FlagDecision::On);
    Ok(())
}

#[tokio::test]
async fn the_embedded_flag_keeps_the_contract() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("flag.db");
    scenario(&EmbeddedFlag::new(Db::open(&path)?)).await?;
    // The flag lives in the file: a process started again on it reads the last value.
    assert_eq!(
        read_decision(&EmbeddedFlag::new(Db::open(&path)?)).await,
        FlagDecision::On
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssm_flag_keeps_the_contract() -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    moto.export_env();
    let client = aws_sdk_ssm::Client::new(&aws::sdk_config().await);
    assert_eq!(
        FLAG_PARAMETER, "/hubspot-analytics/incremental-sync-enabled",
        "the seed's"
    );
    let flag = SsmFlag::new(client.clone(), FLAG_PARAMETER);
    scenario(&flag).await?;
    let stored = client.get_parameter().name(FLAG_PARAMETER).send().await?;
    assert_eq!(
        stored.parameter().and_then(|p| p.value()),
        Some("true"),
        "the seed's parameter holds the raw value"
    );

    // `hubsync infra up` creates a missing flag as "false" (off, and said so), and leaves one
    // that exists as it is.
    let names = AwsNames {
        prefix: "fcontract".into(),
        flag_parameter: "/hubsync-contract/incremental-sync-enabled".into(),
        ..Default::default()
    };
    infra::provision::up(&names, "lake-fcontract", "data", 2).await?;
    let provisioned = SsmFlag::new(client.clone(), &names.flag_parameter);
    assert_eq!(provisioned.get().await?.as_deref(), Some("false"));
    assert_eq!(read_decision(&provisioned).await, FlagDecision::Off);
    provisioned.set("yes").await?;
    infra::provision::up(&names, "lake-fcontract", "data", 2).await?;
    assert_eq!(
        read_decision(&provisioned).await,
        FlagDecision::On,
        "infra up kept it"
    );

    // A flag that cannot be read is an error, never "missing": the emulator is gone.
    drop(moto);
    let failed = flag.get().await;
    assert!(failed.is_err(), "an unreachable parameter store: {failed:?}");
    match read_decision(&flag).await {
        FlagDecision::ReadFailed(why) => assert!(why.contains(FLAG_PARAMETER), "{why}"),
        other => panic!("an unreadable flag decided {other:?}"),
    }
    Ok(())
}
