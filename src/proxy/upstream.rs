//! Upstream connections of one proxy worker, kept alive and reused: an idle list per backend,
//! a connection handed back when the response it carried has been read to its end.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One worker's upstream connections.
#[derive(Default)]
pub struct Upstreams {
    idle: Mutex<HashMap<SocketAddrV4, Vec<SendRequest<Incoming>>>>,
}

/// An error on the way to the backend, worded for the 502 page.
pub type UpstreamError = Box<dyn std::error::Error + Send + Sync>;

impl Upstreams {
    /// Sends a request to `backend` over an idle connection, or a new one.
    pub async fn send(self: &Arc<Self>, backend: SocketAddrV4, req: Request<Incoming>) -> Result<Response<Returning>, UpstreamError> {
        let mut sender = self.checkout(backend).await?;
        let resp = sender.send_request(req).await?;
        let pool = self.clone();
        Ok(resp.map(|inner| Returning { inner, back: Some((sender, backend, pool)), ended: false }))
    }

    async fn checkout(&self, backend: SocketAddrV4) -> Result<SendRequest<Incoming>, UpstreamError> {
        loop {
            let candidate = self.idle.lock().expect("never poisoned").get_mut(&backend).and_then(Vec::pop);
            match candidate {
                Some(mut s) => {
                    if s.ready().await.is_ok() {
                        return Ok(s);
                    }
                }
                None => return self.connect(backend).await,
            }
        }
    }

    async fn connect(&self, backend: SocketAddrV4) -> Result<SendRequest<Incoming>, UpstreamError> {
        let stream = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect(backend)).await??;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn give_back(&self, backend: SocketAddrV4, sender: SendRequest<Incoming>) {
        let mut idle = self.idle.lock().expect("never poisoned");
        let list = idle.entry(backend).or_default();
        if list.len() < 256 {
            list.push(sender);
        }
    }
}

/// A response body that hands its connection back once read to its end.
pub struct Returning {
    inner: Incoming,
    back: Option<(SendRequest<Incoming>, SocketAddrV4, Arc<Upstreams>)>,
    ended: bool,
}

impl Body for Returning {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // A body read to its end leaves the connection ready for the next request; one dropped
        // half-way leaves it mid-response, and it goes.
        if self.ended || self.inner.is_end_stream() {
            if let Some((sender, backend, pool)) = self.back.take() {
                pool.give_back(backend, sender);
            }
        }
    }
}
