//! A TCP proxy a test controls: while "down" it accepts and at once closes every
//! connection (and cuts the open ones), so that a client behind it sees the database as
//! unreachable; while "up" it forwards to the real server. The listening port never
//! changes, so clients keep their URL across outages.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A switchable TCP proxy in front of a server. Stops when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `target` (`host:port`)
    /// while up. Panics when it cannot bind.
    pub async fn start(target: impl Into<String>, up: bool) -> Self {
        let target = target.into();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind proxy: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("proxy address: {e}"));
        let (tx, rx) = watch::channel(up);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let mut rx = rx.clone();
                if !*rx.borrow_and_update() {
                    drop(socket);
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(&target).await else { return };
                    forward(socket, upstream, rx).await;
                });
            }
        });
        Self { addr, up: tx, task }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` pointed at the proxy instead of its server.
    pub fn url_for(&self, url: &str) -> String {
        super::with_authority(url, &self.addr.to_string())
    }

    /// Switches forwarding on or off; switching off also cuts open connections.
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.up.send_replace(false);
        self.task.abort();
    }
}

async fn forward(mut client: TcpStream, mut upstream: TcpStream, mut up: watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}
