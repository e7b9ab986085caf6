//! A small HTTP/1.1 client for the controller's REST API on loopback: one keep-alive connection,
//! JSON bodies with a Content-Length (what actix-web sends for them), and the event stream's chunked
//! body. The benchmark keeps its own connections so the follower reads on a thread of its own.

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Errors of a request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{method} {path}: {source}")]
    Io {
        method: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{method} {path}: malformed answer: {reason}")]
    Malformed {
        method: String,
        path: String,
        reason: String,
    },
    #[error("{method} {path}: HTTP {status}: {body}")]
    Status {
        method: String,
        path: String,
        status: u16,
        body: String,
    },
}

/// A connection to `addr` sending `X-Auth-Token: token`, redialled when the server closed it.
pub struct Http {
    addr: String,
    token: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    pub fn new(addr: &str, token: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            token: token.to_owned(),
            conn: None,
        }
    }

    /// GET `path`, the body parsed as `T`.
    pub async fn get<T: DeserializeOwned>(&mut self, path: &str) -> Result<T, HttpError> {
        let body = self.request("GET", path, None).await?;
        parse("GET", path, &body)
    }

    /// POST `body` to `path`, the answer as JSON.
    pub async fn post(&mut self, path: &str, body: &Value) -> Result<Value, HttpError> {
        let answer = self
            .request("POST", path, Some(body.to_string().as_bytes()))
            .await?;
        parse("POST", path, &answer)
    }

    /// The body of a 2xx answer. A kept-alive connection the server closed meanwhile is redialled once.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, HttpError> {
        let reused = self.conn.is_some();
        match self.exchange(method, path, body).await {
            Err(HttpError::Io { .. }) if reused => {
                self.conn = None;
                self.exchange(method, path, body).await
            }
            other => other,
        }
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, HttpError> {
        let io = |source| HttpError::Io {
            method: method.to_owned(),
            path: path.to_owned(),
            source,
        };
        let malformed = |reason: &str| HttpError::Malformed {
            method: method.to_owned(),
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if self.conn.is_none() {
            let tcp = TcpStream::connect(&self.addr).await.map_err(io)?;
            tcp.set_nodelay(true).map_err(io)?;
            self.conn = Some(BufReader::new(tcp));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(malformed("no connection"));
        };
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nX-Auth-Token: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            self.token,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        conn.get_mut().write_all(&request).await.map_err(io)?;

        let mut line = String::new();
        if conn.read_line(&mut line).await.map_err(io)? == 0 {
            return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| malformed("no status line"))?;
        let mut length = None;
        let mut close = false;
        loop {
            line.clear();
            conn.read_line(&mut line).await.map_err(io)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        let length = length.ok_or_else(|| malformed("no Content-Length"))?;
        let mut answer = vec![0; length];
        conn.read_exact(&mut answer).await.map_err(io)?;
        if close {
            self.conn = None;
        }
        if !(200..300).contains(&status) {
            return Err(HttpError::Status {
                method: method.to_owned(),
                path: path.to_owned(),
                status,
                body: String::from_utf8_lossy(&answer).into_owned(),
            });
        }
        Ok(answer)
    }
}

/// A streaming GET's body (the event stream), read as the server sends it: actix-web sends a
/// stream without a length, in chunked transfer coding.
pub struct BodyStream {
    conn: BufReader<TcpStream>,
    path: String,
}

impl BodyStream {
    /// GET `path` with `token` on a connection of its own; fails unless the answer is 200 and chunked.
    pub async fn open(addr: &str, token: &str, path: &str) -> Result<Self, HttpError> {
        let io = |source| HttpError::Io {
            method: "GET".to_owned(),
            path: path.to_owned(),
            source,
        };
        let tcp = TcpStream::connect(addr).await.map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let mut conn = BufReader::new(tcp);
        let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {token}\r\n\r\n");
        conn.get_mut()
            .write_all(head.as_bytes())
            .await
            .map_err(io)?;
        let mut line = String::new();
        conn.read_line(&mut line).await.map_err(io)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut chunked = false;
        loop {
            let mut header = String::new();
            conn.read_line(&mut header).await.map_err(io)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                chunked |= name.eq_ignore_ascii_case("transfer-encoding")
                    && value.trim().eq_ignore_ascii_case("chunked");
            }
        }
        if status != "200" || !chunked {
            return Err(HttpError::Malformed {
                method: "GET".to_owned(),
                path: path.to_owned(),
                reason: format!("expected a chunked 200, got {}", line.trim_end()),
            });
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// The next chunk of the body; `None` once the server ended it.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, HttpError> {
        let io = |source| HttpError::Io {
            method: "GET".to_owned(),
            path: self.path.clone(),
            source,
        };
        let mut line = String::new();
        if self.conn.read_line(&mut line).await.map_err(io)? == 0 {
            return Ok(None);
        }
        let size_field = line.trim_end().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_field, 16).map_err(|_| HttpError::Malformed {
            method: "GET".to_owned(),
            path: self.path.clone(),
            reason: format!("a chunk size of {:?}", line.trim_end()),
        })?;
        let mut chunk = vec![0; size + 2];
        self.conn.read_exact(&mut chunk).await.map_err(io)?;
        chunk.truncate(size);
        Ok((size > 0).then_some(chunk))
    }
}

fn parse<T: DeserializeOwned>(method: &str, path: &str, body: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| HttpError::Malformed {
        method: method.to_owned(),
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// A gauge's value in Prometheus text (`name value` lines).
pub fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (n, v) = line.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Answers each request on one connection with `answers` in turn, then closes.
    async fn server(answers: Vec<&'static str>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = BufReader::new(tcp);
            for answer in answers {
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    conn.read_line(&mut line).await.unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; length];
                conn.read_exact(&mut body).await.unwrap();
                conn.get_mut().write_all(answer.as_bytes()).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn json_answers_on_one_kept_alive_connection() {
        let addr = server(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{\"a\":1}\n",
            "HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 2\r\n\r\nno",
        ])
        .await;
        let mut http = Http::new(&addr, "t");
        let v: Value = http.get("/x").await.unwrap();
        assert_eq!(v["a"], 1);
        match http.post("/y", &serde_json::json!({})).await {
            Err(HttpError::Status { status, body, .. }) => {
                assert_eq!((status, body.as_str()), (422, "no"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_chunked_stream_is_read_chunk_by_chunk_to_its_end() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = BufReader::new(tcp);
            let mut line = String::new();
            while conn.read_line(&mut line).await.unwrap() > 2 {
                line.clear();
            }
            let answer = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nb;ext=1\r\n, the world\r\n0\r\n\r\n";
            conn.get_mut().write_all(answer.as_bytes()).await.unwrap();
        });
        let mut stream = BodyStream::open(&addr, "t", "/events").await.unwrap();
        assert_eq!(stream.next_chunk().await.unwrap(), Some(b"hello".to_vec()));
        assert_eq!(
            stream.next_chunk().await.unwrap(),
            Some(b", the world".to_vec())
        );
        assert_eq!(stream.next_chunk().await.unwrap(), None);
    }

    #[test]
    fn gauges_are_read_from_metrics_text() {
        let text = "# HELP x\ndc_online_subclouds 42\ndc_subclouds 50\n";
        assert_eq!(gauge(text, "dc_online_subclouds"), Some(42.0));
        assert_eq!(gauge(text, "dc_missing"), None);
    }
}
