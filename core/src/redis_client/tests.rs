use super::*;

#[test]
fn several_nodes_need_cluster_or_sentinel_mode() {
    let refused = RedisClient::new("redis://127.0.0.1:7001,redis://127.0.0.1:7002", false);
    assert!(matches!(refused, Err(ModeError::SeveralNodes(2))));
    let client =
        RedisClient::new(" redis://127.0.0.1:7001, redis://127.0.0.1:7002 ", true).unwrap();
    assert_eq!(client.urls.len(), 2);
    assert_eq!(client.publish_command(), "SPUBLISH");
    let single = RedisClient::new("redis://127.0.0.1:6379", false).unwrap();
    assert_eq!(single.publish_command(), "PUBLISH");
    let sentinels = RedisClient::with_options(
        "redis://127.0.0.1:26379,redis://127.0.0.1:26380",
        RedisOptions {
            deployment: Deployment::Sentinel {
                master: "main".into(),
            },
            ..RedisOptions::default()
        },
    )
    .unwrap();
    assert_eq!(sentinels.publish_command(), "PUBLISH");
}

/// TLS settings are checked before anything is dialled: TLS files
/// need `rediss://` URLs (all of them), and must be readable.
#[test]
fn tls_settings_are_checked_when_the_client_is_made() {
    let with_ca = |urls: &str, deployment: Deployment| {
        let options = RedisOptions {
            deployment,
            tls: TlsFiles {
                ca: "/nonexistent/ca.pem".into(),
                ..TlsFiles::default()
            },
            ..RedisOptions::default()
        };
        match RedisClient::with_options(urls, options) {
            Err(ModeError::Tls { setting, message }) => (setting, message),
            other => panic!("expected a TLS error, got {:?}", other.err()),
        }
    };
    let (setting, message) = with_ca("rediss://127.0.0.1:6379", Deployment::Single);
    assert_eq!(setting, "redis.tls_ca_file");
    assert!(message.contains("/nonexistent/ca.pem"), "{message}");
    // The scheme is looked at before the file is read.
    let (setting, message) = with_ca("redis://127.0.0.1:6379", Deployment::Single);
    assert_eq!(setting, "redis.tls_ca_file");
    assert!(message.contains("rediss://"), "{message}");
    let (setting, message) = with_ca(
        "rediss://127.0.0.1:7001,redis://127.0.0.1:7002",
        Deployment::Cluster,
    );
    assert_eq!(setting, "redis.url");
    assert!(message.contains("mixes"), "{message}");
}

#[test]
fn passwords_stay_out_of_messages() {
    assert_eq!(
        redact("redis://user:secret@127.0.0.1:6379"),
        "redis://***@127.0.0.1:6379"
    );
}
