//! Real QUIC on loopback: the post-quantum-only key exchange, and link
//! authentication by roster identity bound to the TLS session.

use std::sync::Arc;
use std::time::Duration;

use sentinel::config::QuicSection;
use sentinel::devnet::new_identity;
use sentinel::transport::{self, Authenticator, LinkError};
use sentinel_protocol::Roster;

const T: Duration = Duration::from_secs(5);

fn ep(provider: rustls::crypto::CryptoProvider) -> quinn::Endpoint {
    transport::endpoint(
        "127.0.0.1:0".parse().expect("literal address"),
        &QuicSection::default(),
        provider,
    )
    .expect("endpoint binds")
}

struct Pair {
    server: Arc<Authenticator>,
    client: Arc<Authenticator>,
    server_ep: quinn::Endpoint,
}

fn pair(client_on_roster: bool) -> Pair {
    let a = new_identity().expect("identity");
    let b = new_identity().expect("identity");
    let members = if client_on_roster {
        vec![a.public().clone(), b.public().clone()]
    } else {
        vec![a.public().clone()]
    };
    let roster = Arc::new(Roster::equal_weight("t", members).expect("roster"));
    Pair {
        server: Arc::new(Authenticator {
            identity: Arc::new(a),
            roster: roster.clone(),
            epoch: 1,
        }),
        client: Arc::new(Authenticator {
            identity: Arc::new(b),
            roster,
            epoch: 1,
        }),
        server_ep: ep(transport::pq_provider()),
    }
}

fn serve_one(p: &Pair) -> tokio::task::JoinHandle<Result<sentinel_protocol::NodeId, LinkError>> {
    let ep = p.server_ep.clone();
    let auth = p.server.clone();
    tokio::spawn(async move {
        let incoming = ep.accept().await.expect("an incoming connection");
        let (conn, peer) = auth.accept(incoming, T).await?;
        // Keep it open until the client is done.
        let _ = tokio::time::timeout(T, conn.closed()).await;
        Ok(peer)
    })
}

#[tokio::test]
async fn rostered_peers_authenticate_each_other_over_pq_quic() {
    let p = pair(true);
    let server = serve_one(&p);
    let client_ep = ep(transport::pq_provider());
    let addr = p.server_ep.local_addr().unwrap();
    let conn = p
        .client
        .dial(&client_ep, addr, p.server.identity.id(), T)
        .await
        .expect("link authenticates");
    conn.close(0u32.into(), b"done");
    assert_eq!(server.await.unwrap().unwrap(), p.client.identity.id());
}

#[tokio::test]
async fn a_classical_only_client_is_refused() {
    let p = pair(true);
    let server = tokio::spawn({
        let ep = p.server_ep.clone();
        async move {
            let incoming = ep.accept().await.expect("an incoming connection");
            incoming.await
        }
    });
    let client_ep = ep(transport::classical_provider());
    let addr = p.server_ep.local_addr().unwrap();
    let e = p
        .client
        .dial(&client_ep, addr, p.server.identity.id(), T)
        .await
        .expect_err("X25519 alone must not be accepted");
    assert!(matches!(e, LinkError::Connection(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("handshake") || text.contains("TLS") || text.contains("alert"),
        "{text}"
    );
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn an_unrostered_key_is_refused_with_a_reason() {
    let p = pair(false);
    let server = serve_one(&p);
    let client_ep = ep(transport::pq_provider());
    let addr = p.server_ep.local_addr().unwrap();
    let dial = p
        .client
        .dial(&client_ep, addr, p.server.identity.id(), T)
        .await;
    assert!(dial.is_err());
    let e = server.await.unwrap().expect_err("server refuses");
    assert!(matches!(e, LinkError::Refused(_)), "{e}");
    assert!(e.to_string().contains("not on the roster"), "{e}");
}

#[tokio::test]
async fn dialling_the_wrong_member_is_detected() {
    let p = pair(true);
    let server = serve_one(&p);
    let client_ep = ep(transport::pq_provider());
    let addr = p.server_ep.local_addr().unwrap();
    // The client expects itself at that address: someone else answers.
    let e = p
        .client
        .dial(&client_ep, addr, p.client.identity.id(), T)
        .await
        .expect_err("wrong peer");
    assert!(matches!(e, LinkError::WrongPeer { .. }), "{e}");
    drop(server);
}
