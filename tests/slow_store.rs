//! A slow disk stalls only the sessions that wait for it. Registering with a token whose
//! identity is not cached reads the identity store; those reads run off the async threads, so
//! while two registrations wait seconds for a stalled store, another session is still served.

mod common;

use common::media::TestServer;
use std::time::Duration;

// One worker thread: a blocking store read on it would stall everything else at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn registrations_waiting_for_a_slow_store_do_not_stall_other_sessions() {
    let ts = TestServer::start(1).await;
    let (_, slow_a) = ts.identity(&["voip"]).await;
    let (_, slow_b) = ts.identity(&["voip"]).await;
    let (_, fast) = ts.identity(&["voip"]).await;
    let directory = ts.server.identity_directory();
    // As after a restart: nothing cached. The fast client registers once, which caches its
    // identity; the two slow ones will have to read the store.
    directory.forget_cached();
    let fast_client = ts.client().await;
    fast_client.register(&fast, Some("Fast")).await.expect("register");
    let (a, b) = (ts.client().await, ts.client().await);

    // A disk that takes 3 s per call; two registrations wait for it.
    directory.store().simulate_slow_disk(Duration::from_secs(3));
    let slow = tokio::spawn(async move {
        let (ra, rb) = tokio::join!(a.register(&slow_a, Some("A")), b.register(&slow_b, Some("B")));
        (ra.is_ok(), rb.is_ok())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The fast session is served while both still wait.
    fast_client.register(&fast, Some("Fast again")).await.expect("the fast session is served");
    assert!(!slow.is_finished(), "the slow registrations are still waiting for the store");
    directory.store().simulate_slow_disk(Duration::ZERO);
    assert_eq!(slow.await.expect("slow registrations"), (true, true), "and they succeed once it answers");
    ts.stop().await;
}
