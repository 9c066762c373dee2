//! A hand-driven h2 client: frames written and read one at a time, for
//! tests that need what a well-behaved client never does (no preface, a
//! header block left open, a body trickled) and that watch for GOAWAY.
//! Header blocks are HPACK literals without Huffman coding, which every
//! decoder must accept; responses are told apart by their DATA, which the
//! echo upstream fills with the request's path.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One frame on the wire.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a frame under 16 MiB");
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix after the bits in `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

fn hpack_string(out: &mut Vec<u8>, s: &str) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend(s.as_bytes());
}

/// The header block of a request: `:method` (GET or POST), `:scheme
/// https`, `:path`, `:authority`, then `extra`.
pub fn request_block(method: &str, authority: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    // Static table: 2 GET, 3 POST, 7 https; names 1 :authority, 4 :path.
    let mut b = vec![if method == "POST" { 0x83 } else { 0x82 }, 0x87];
    hpack_int(&mut b, 0x00, 4, 4);
    hpack_string(&mut b, path);
    hpack_int(&mut b, 0x00, 4, 1);
    hpack_string(&mut b, authority);
    for (n, v) in extra {
        b.push(0x00);
        hpack_string(&mut b, n);
        hpack_string(&mut b, v);
    }
    b
}

/// A frame as read.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's last stream id.
    pub fn last_stream(&self) -> Option<u32> {
        (self.kind == GOAWAY && self.payload.len() >= 4).then(|| {
            u32::from_be_bytes([
                self.payload[0] & 0x7f,
                self.payload[1],
                self.payload[2],
                self.payload[3],
            ])
        })
    }
}

/// A response as seen on the wire, and what else came meanwhile.
#[derive(Debug, Default)]
pub struct Exchange {
    /// The response's DATA, as text.
    pub body: String,
    /// Whether the stream was reset instead of answered to the end.
    pub reset: bool,
    /// The last stream ids of the GOAWAY frames that arrived before the
    /// response ended.
    pub goaways: Vec<u32>,
}

/// How a connection ended.
#[derive(Debug)]
pub struct Ended {
    /// When the first GOAWAY arrived, counted from the call, and its last
    /// stream id.
    pub goaway: Option<(Duration, u32)>,
    /// When the connection closed, counted from the call.
    pub closed: Duration,
}

/// An h2 connection driven frame by frame.
pub struct H2Raw<S> {
    pub io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> H2Raw<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes` and flushes them.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// The client preface and an empty SETTINGS frame.
    pub async fn start(&mut self) -> std::io::Result<()> {
        let mut b = PREFACE.to_vec();
        b.extend(frame(SETTINGS, 0, 0, &[]));
        self.send(&b).await
    }

    /// Sends a request's HEADERS (with END_STREAM unless `body_follows`).
    pub async fn request(
        &mut self,
        stream: u32,
        method: &str,
        authority: &str,
        path: &str,
        extra: &[(&str, &str)],
        body_follows: bool,
    ) -> std::io::Result<()> {
        let flags = END_HEADERS | if body_follows { 0 } else { END_STREAM };
        let block = request_block(method, authority, path, extra);
        self.send(&frame(HEADERS, flags, stream, &block)).await
    }

    /// The next frame; `None` once the server closed the connection (a
    /// close without TLS close_notify included).
    pub async fn read_frame(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes([
                            self.buf[5] & 0x7f,
                            self.buf[6],
                            self.buf[7],
                            self.buf[8],
                        ]),
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Ok(Some(f));
                }
            }
            let mut chunk = [0u8; 16384];
            match self.io.read(&mut chunk).await {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Answers what a client must (SETTINGS, PING), as a client would.
    async fn acknowledge(&mut self, f: &Frame) -> std::io::Result<()> {
        match f.kind {
            SETTINGS if f.flags & ACK == 0 => self.send(&frame(SETTINGS, ACK, 0, &[])).await,
            PING if f.flags & ACK == 0 => self.send(&frame(PING, ACK, 0, &f.payload)).await,
            _ => Ok(()),
        }
    }

    /// Reads until `stream`'s response has ended (or was reset), within
    /// `limit`.
    pub async fn response(&mut self, stream: u32, limit: Duration) -> Result<Exchange, BoxError> {
        let mut ex = Exchange::default();
        tokio::time::timeout(limit, async {
            loop {
                let Some(f) = self.read_frame().await? else {
                    return Err::<_, BoxError>(
                        format!("connection closed before stream {stream} ended: {ex:?}").into(),
                    );
                };
                self.acknowledge(&f).await?;
                if let Some(last) = f.last_stream() {
                    ex.goaways.push(last);
                }
                if f.stream != stream {
                    continue;
                }
                match f.kind {
                    DATA => ex.body.push_str(&String::from_utf8_lossy(&f.payload)),
                    RST_STREAM => {
                        ex.reset = true;
                        return Ok(());
                    }
                    _ => {}
                }
                if matches!(f.kind, DATA | HEADERS) && f.flags & END_STREAM != 0 {
                    return Ok(());
                }
            }
        })
        .await
        .map_err(|_| format!("stream {stream} not answered within {limit:?}: {ex:?}"))??;
        Ok(ex)
    }

    /// A GET of `path` on `stream`, read to its end.
    pub async fn get(
        &mut self,
        stream: u32,
        authority: &str,
        path: &str,
    ) -> Result<Exchange, BoxError> {
        self.request(stream, "GET", authority, path, &[], false)
            .await?;
        self.response(stream, Duration::from_secs(10)).await
    }

    /// Reads (answering PINGs when `answer`) until the server closes the
    /// connection; `None` if it is still open after `limit`.
    pub async fn until_closed(&mut self, limit: Duration, answer: bool) -> Option<Ended> {
        let started = Instant::now();
        let mut goaway = None;
        let read = tokio::time::timeout(limit, async {
            loop {
                match self.read_frame().await {
                    Ok(Some(f)) => {
                        if let (None, Some(last)) = (goaway, f.last_stream()) {
                            goaway = Some((started.elapsed(), last));
                        }
                        if answer {
                            let _ = self.acknowledge(&f).await;
                        }
                    }
                    Ok(None) | Err(_) => return,
                }
            }
        })
        .await;
        read.ok().map(|()| Ended {
            goaway,
            closed: started.elapsed(),
        })
    }
}
