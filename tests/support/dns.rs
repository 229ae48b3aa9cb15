//! A DNS server on 127.0.0.1 whose answers the test changes: A and AAAA records for any name
//! it is told about, a TTL, and a switch that makes it answer SERVFAIL.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

type Answers = Arc<Mutex<HashMap<String, (Vec<IpAddr>, u32)>>>;

pub struct TestDns {
    pub addr: SocketAddr,
    answers: Answers,
    fail: Arc<AtomicBool>,
    pub queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestDns {
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = socket.local_addr().expect("addr");
        let answers: Answers = Arc::default();
        let fail = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let task = {
            let (answers, fail, queries) = (answers.clone(), fail.clone(), queries.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                        return;
                    };
                    let Ok(req) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::SeqCst);
                    let mut resp = Message::new();
                    resp.set_id(req.id())
                        .set_message_type(MessageType::Response)
                        .set_op_code(req.op_code())
                        .set_recursion_desired(req.recursion_desired())
                        .set_recursion_available(true)
                        .set_authoritative(true);
                    resp.add_queries(req.queries().to_vec());
                    if fail.load(Ordering::SeqCst) {
                        resp.set_response_code(ResponseCode::ServFail);
                    } else if let Some(q) = req.queries().first() {
                        let key = q.name().to_ascii().trim_end_matches('.').to_lowercase();
                        let found = answers.lock().expect("lock").get(&key).cloned();
                        match found {
                            None => {
                                resp.set_response_code(ResponseCode::NXDomain);
                            }
                            Some((ips, ttl)) => {
                                for ip in ips {
                                    let rdata = match (ip, q.query_type()) {
                                        (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
                                        (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
                                        _ => continue,
                                    };
                                    resp.add_answer(Record::from_rdata(
                                        q.name().clone(),
                                        ttl,
                                        rdata,
                                    ));
                                }
                            }
                        }
                    }
                    if let Ok(bytes) = resp.to_vec() {
                        let _ = socket.send_to(&bytes, peer).await;
                    }
                }
            })
        };
        Self {
            addr,
            answers,
            fail,
            queries,
            task,
        }
    }

    /// Answer `name` with `ips` and `ttl` seconds from now on.
    pub fn set(&self, name: &str, ips: &[IpAddr], ttl: u32) {
        Name::from_ascii(name).expect("valid name");
        self.answers
            .lock()
            .expect("lock")
            .insert(name.to_lowercase(), (ips.to_vec(), ttl));
    }

    /// Answer SERVFAIL to everything while `fail`.
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}
