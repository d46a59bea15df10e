//! IRC codec throughput, in messages per second.
//!
//! Group `irc`:
//! - `encode`: what every relayed message goes through towards IRC: rich text rendered to mIRC
//!   codes (with forbidden characters stripped) and split to fit a 512-byte line with our prefix;
//! - `decode`: what every line from IRC goes through: bytes decoded (UTF-8 or Windows-1252),
//!   the protocol line parsed (tags, source, params), CTCP recognised, formatting parsed.
//!
//! Both over the same 10,000 mixed-language messages (some long, some formatted).

use std::hint::black_box;

use bridgewarden::irc::codec;
use bridgewarden::irc::line::Line;
use bridgewarden::rich_text::{Colour, RichText, Style};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const N: usize = 10_000;

fn corpus() -> Vec<RichText> {
    let words = [
        "hello",
        "release",
        "build",
        "привет",
        "сборка",
        "سلام",
        "ساخت",
        "the",
        "и",
        "و",
        "fails",
        "works",
        "مرسی",
        "спасибо",
        "today",
        "tomorrow",
        "#1234",
        "https://example.org/x",
    ];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..N)
        .map(|_| {
            let len = if next() % 10 == 0 {
                120
            } else {
                4 + next() % 20
            };
            let mut t = RichText::default();
            for i in 0..len {
                let w = words[(next() % words.len() as u64) as usize];
                let style = match next() % 12 {
                    0 => Style {
                        bold: true,
                        ..Style::default()
                    },
                    1 => Style {
                        fg: Some(Colour::Index(4)),
                        ..Style::default()
                    },
                    _ => Style::default(),
                };
                if i > 0 {
                    t.push(" ", Style::default());
                }
                t.push(w, style);
            }
            t
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let messages = corpus();
    let budget = codec::text_budget(512, "bridgewarden!~bw@127.0.0.1", "PRIVMSG", "#chat");
    let lines: Vec<Vec<u8>> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let text = codec::render(m);
            let text = if i % 7 == 0 { codec::action(&text) } else { text };
            format!("@time=2026-11-26T10:00:00.000Z;account=user{i};msgid=abc{i} :user{i}!~u@host{i}.example PRIVMSG #chat :{text}").into_bytes()
        })
        .collect();
    let mut group = c.benchmark_group("irc");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("encode", |b| {
        b.iter(|| {
            let mut parts = 0;
            for m in &messages {
                for line in m.lines() {
                    let rendered = codec::render(&line);
                    parts += codec::split(&rendered, budget).len();
                }
            }
            black_box(parts)
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut spans = 0;
            for raw in &lines {
                let text = codec::decode_line(raw);
                let line = Line::parse(&text).expect("valid line");
                let body = line.param(1).unwrap_or("");
                let rich = match codec::ctcp(body) {
                    codec::Ctcp::Action(t) | codec::Ctcp::None(t) => codec::parse_formatting(t),
                    codec::Ctcp::Other(..) => RichText::default(),
                };
                spans += rich.spans.len();
            }
            black_box(spans)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
