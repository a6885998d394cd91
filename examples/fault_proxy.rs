//! The tests' fault-injecting proxy as a process, for `benches/s3.sh`: forwards to an
//! S3 server and answers every Nth GET with 503 SlowDown (N = 0: no faults), so the
//! bench can compare kiln's throughput under a steady throttling rate with a fault-free
//! run through the same proxy. Prints its endpoint, then serves until killed; on stdin
//! EOF it prints how many faults it injected.
//!
//! usage: cargo run --release --example fault_proxy -- http://127.0.0.1:PORT N

#[allow(dead_code, reason = "the example uses only part of the test proxy")]
#[path = "../tests/s3/proxy.rs"]
mod proxy;

use std::io::{BufRead, Write};

use proxy::{Fault, FaultProxy, Rule};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(upstream), Some(every)) = (args.get(1), args.get(2).and_then(|n| n.parse().ok()))
    else {
        eprintln!("usage: fault_proxy UPSTREAM EVERY_NTH_GET (0: no faults)");
        std::process::exit(2);
    };
    let p = FaultProxy::start(upstream);
    if every > 0 {
        p.add(
            Rule::new(Fault::Status(503, "SlowDown"))
                .method(hyper::Method::GET)
                .every(every),
        );
    }
    println!("{}", p.endpoint);
    let _ = std::io::stdout().flush();
    // Serve until stdin closes.
    for _ in std::io::stdin().lock().lines() {}
    eprintln!("fault_proxy: {} faults injected", p.injected());
}
