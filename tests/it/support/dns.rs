//! A tiny DNS server on 127.0.0.1:53 (UDP): `A` queries for the names it knows get 127.0.0.1,
//! everything else NXDOMAIN; `AAAA` for known names gets an empty answer. Real wire format, for
//! testing a resolver that reads /etc/resolv.conf itself.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct Dns {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dns {
    /// Serves `names`; `None` when port 53 is taken (or not ours to bind).
    pub fn start(names: &[&str]) -> Option<Dns> {
        let socket = UdpSocket::bind("127.0.0.1:53").ok()?;
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
                if let Some(answer) = answer(&buf[..n], &names) {
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
        Some(Dns { stop, thread: Some(thread) })
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The response to one query message.
fn answer(query: &[u8], names: &[String]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // the question: labels, then type and class
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = &query[12..at + 4];
    let known = names.contains(&labels.join("."));
    let rd = query[2] & 0x01;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query[..2]); // id
    out.push(0x80 | rd); // QR, RD copied
    out.push(if known { 0x80 } else { 0x83 }); // RA; NXDOMAIN for unknown names
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::from(known && qtype == 1).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    if known && qtype == 1 {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}
