//! Driving a client connection in place: the health probes' and the admin client's HTTP
//! connections, the VIP host check's netlink connection.

/// Await `work` while driving `conn` (a hyper client connection) beside it; a connection that
/// ends first leaves `work` to finish with what it has (its requests then fail).
pub(crate) async fn drive<C, W>(conn: C, work: W) -> W::Output
where
    C: std::future::Future,
    W: std::future::Future,
{
    tokio::pin!(conn, work);
    let mut conn_done = false;
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = &mut conn, if !conn_done => conn_done = true,
        }
    }
}
