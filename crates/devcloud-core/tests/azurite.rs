//! Azurite in HTTPS + OAuth mode accepts the devcloud identity's storage tokens and refuses others.

use devcloud_core::{Identity, Tls, azurite};

/// A folder with the local cloud's TLS and identity, and a client that trusts its CA.
struct Local {
    dir: tempfile::TempDir,
    tls: Tls,
    identity: Identity,
    client: reqwest::Client,
}

fn local() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let tls = Tls::load_or_create(dir.path()).unwrap();
    let identity = Identity::load_or_create(dir.path()).unwrap();
    devcloud_core::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(&tls.ca_pem_bytes().unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    Local {
        dir,
        tls,
        identity,
        client,
    }
}

#[tokio::test]
async fn azurite_accepts_identity_tokens_over_https() {
    let Local {
        dir,
        tls,
        identity,
        client: c,
    } = local();
    let az = azurite::start(&tls, 0, &dir.path().join("azurite"))
        .await
        .unwrap();
    assert_ne!(az.port(), 0);
    let token = identity.issue("https://storage.azure.com/.default");
    let url = format!("{}/cont1?restype=container", az.blob_endpoint());
    let r = c
        .put(&url)
        .bearer_auth(&token)
        .header("x-ms-version", "2025-01-05")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let wrong = identity.issue("https://management.azure.com");
    let r = c
        .put(format!("{}/cont2?restype=container", az.blob_endpoint()))
        .bearer_auth(&wrong)
        .header("x-ms-version", "2025-01-05")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let port = az.port();
    drop(az);
    // Killed on drop: the port stops answering.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Azurite still listening"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn azurite_on_disk_restarts_on_its_port_with_its_blobs_and_in_memory_refuses_to() {
    let Local {
        dir,
        tls,
        identity,
        client: c,
    } = local();
    let token = identity.issue("https://storage.azure.com/.default");
    let mut az = azurite::start_on_disk(&tls, 0, &dir.path().join("azurite"))
        .await
        .unwrap();
    let (port, endpoint) = (az.port(), az.blob_endpoint());
    let blob = format!("{endpoint}/kept/b.txt");
    let r = c
        .put(format!("{endpoint}/kept?restype=container"))
        .bearer_auth(&token)
        .header("x-ms-version", "2025-01-05")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .put(&blob)
        .bearer_auth(&token)
        .header("x-ms-version", "2025-01-05")
        .header("x-ms-blob-type", "BlockBlob")
        .body("still here")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    az.restart().await.unwrap();
    assert_eq!(az.port(), port, "the same port");
    let r = c
        .get(&blob)
        .bearer_auth(&token)
        .header("x-ms-version", "2025-01-05")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the blob outlived the restart");
    assert_eq!(r.text().await.unwrap(), "still here");

    let mut memory = azurite::start(&tls, 0, &dir.path().join("memory"))
        .await
        .unwrap();
    assert!(matches!(
        memory.restart().await,
        Err(azurite::AzuriteError::InMemory)
    ));
}
