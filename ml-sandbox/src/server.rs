//! Serving an axum [`Router`] on `127.0.0.1` on a free port.
//!
//! Connections are served one by one with hyper (not with `axum::serve`) so that the
//! [fault layer](crate::fault) can really drop a connection: every request carries a
//! per-connection handle that, when fired, closes the TCP connection without an HTTP answer.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tower_service::Service as _;

use crate::error::{Result, SandboxError};

/// A router served on `127.0.0.1:<free port>`.
///
/// Dropping the handle stops accepting and closes every open connection (WebSocket
/// connections of emulators included); [`shutdown`](Self::shutdown) does the same and waits
/// for the accept loop to end.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// A bound but not yet serving listener: its address is known before the router is built
/// (for emulators whose answers contain their own URL).
#[derive(Debug)]
pub struct Binding {
    listener: TcpListener,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl Binding {
    /// Binds `127.0.0.1:0`.
    pub async fn new() -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(SandboxError::Bind)?;
        let addr = listener.local_addr().map_err(SandboxError::Bind)?;
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            listener,
            addr,
            shutdown,
        })
    }

    /// The bound address (always `127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The signal the [`Server`] made from this binding will fire on shutdown.
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.shutdown.subscribe())
    }

    /// Starts serving `router`. Must be called inside a tokio runtime.
    pub fn serve(self, router: Router) -> Server {
        let rx = self.shutdown.subscribe();
        let task = tokio::spawn(accept_loop(self.listener, router, rx));
        tracing::debug!(addr = %self.addr, "sandbox server listening");
        Server {
            addr: self.addr,
            shutdown: self.shutdown,
            task: Some(task),
        }
    }
}

impl Server {
    /// Binds `127.0.0.1:0` and serves `router` until the handle is dropped or shut down.
    ///
    /// Must be called inside a tokio runtime.
    pub async fn start(router: Router) -> Result<Self> {
        Ok(Binding::new().await?.serve(router))
    }

    /// The bound address (always `127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// A signal that fires when the server shuts down, for long-lived tasks (WebSocket
    /// connections) that the server did not spawn itself.
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.shutdown.subscribe())
    }

    /// Stops accepting, closes the open connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Resolves when the [`Server`] it came from shuts down or is dropped.
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    /// Waits for the shutdown.
    pub async fn wait(&mut self) {
        // An error means the sender is gone: the server was dropped.
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}

/// Put into every request's extensions: fires to close the request's connection at once,
/// without an HTTP response.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionKill(Arc<Notify>);

impl ConnectionKill {
    /// Closes the connection (the connection task drops the socket).
    pub(crate) fn fire(&self) {
        self.0.notify_one();
    }
}

async fn accept_loop(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stopped| *stopped) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE; back off a little instead of spinning.
                tracing::debug!(error = %e, "sandbox accept failed");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let handle = ConnectionKill(kill.clone());
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(handle.clone());
                let req: Request = req.map(axum::body::Body::new);
                let mut router = router.clone();
                // `Router` is always ready, so `call` needs no `poll_ready` first.
                let future = router.call(req);
                async move { Ok::<_, Infallible>(future.await.unwrap_or_else(|e| match e {})) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::trace!(error = %e, "sandbox connection ended with an error");
                    }
                }
                () = kill.notified() => {
                    tracing::debug!("sandbox connection dropped by a fault");
                }
                _ = shutdown.wait_for(|stopped| *stopped) => {}
            }
        });
    }
}
