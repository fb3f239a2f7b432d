//! nmap's timing templates (`-T0`..`-T5`) and the RFC 6298 style RTT estimator.

use std::time::Duration;

/// Timing parameters of a scan. Built from a template with [`Timing::template`], then
/// adjusted field by field (fine-grained options override the template, as in nmap).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Timeout before the first RTT sample.
    pub initial_rtt_timeout: Duration,
    /// Lower clamp of the adaptive timeout.
    pub min_rtt_timeout: Duration,
    /// Upper clamp of the adaptive timeout.
    pub max_rtt_timeout: Duration,
    /// At most this many retransmissions of a silent probe (nmap's `--max-retries`). Like
    /// nmap on a loss-free link, a silent port gets one; more only while the previous
    /// pass still drew new answers (a lossy network or a swallowed ICMP error).
    pub max_retries: u8,
    /// Minimum delay between two probes (nmap's `--scan-delay`).
    pub scan_delay: Duration,
    /// Upper bound on the probe rate, probes per second (`--max-rate`).
    pub max_rate: Option<f64>,
    /// Delayed passes over silent ports after the target's ICMP limiter refilled (on by
    /// default; `-T5` turns it off).
    pub icmp_refill_pass: bool,
}

impl Timing {
    /// nmap's template `-T<level>` (0 paranoid .. 5 insane); levels above 5 act as 5.
    pub fn template(level: u8) -> Self {
        let ms = Duration::from_millis;
        let base = Self {
            initial_rtt_timeout: ms(1000),
            min_rtt_timeout: ms(100),
            max_rtt_timeout: ms(10_000),
            max_retries: 10,
            scan_delay: Duration::ZERO,
            max_rate: None,
            icmp_refill_pass: true,
        };
        match level {
            0 => Self {
                initial_rtt_timeout: ms(300_000),
                max_rtt_timeout: ms(300_000),
                scan_delay: ms(300_000),
                ..base
            },
            1 => Self {
                initial_rtt_timeout: ms(15_000),
                max_rtt_timeout: ms(15_000),
                scan_delay: ms(15_000),
                ..base
            },
            2 => Self { scan_delay: ms(400), ..base },
            3 => base,
            4 => Self {
                initial_rtt_timeout: ms(500),
                max_rtt_timeout: ms(1250),
                max_retries: 6,
                ..base
            },
            _ => Self {
                initial_rtt_timeout: ms(250),
                min_rtt_timeout: ms(50),
                max_rtt_timeout: ms(300),
                max_retries: 2,
                icmp_refill_pass: false,
                ..base
            },
        }
    }

    /// Sets `--min-rate`: nmap's scheduler sends at least this fast; here probes are never
    /// held back by congestion control, so only a `--max-rate` below it matters and is
    /// raised to it.
    pub fn with_min_rate(mut self, rate: f64) -> Self {
        if let Some(max) = self.max_rate {
            self.max_rate = Some(max.max(rate));
        }
        // A template's scan delay that would keep the rate below the minimum yields.
        if rate > 0.0 && self.scan_delay.as_secs_f64() > 1.0 / rate {
            self.scan_delay = Duration::from_secs_f64(1.0 / rate);
        }
        self
    }

    /// The interval between probes implied by `scan_delay` and `max_rate`.
    pub fn send_interval(&self) -> Duration {
        let rate = self
            .max_rate
            .filter(|r| *r > 0.0)
            .map_or(Duration::ZERO, |r| Duration::from_secs_f64(1.0 / r));
        rate.max(self.scan_delay)
    }
}

/// RFC 6298 RTT estimator with nmap's clamps (timing.cc `adjust_timeouts2`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimator {
    /// An estimator without samples.
    pub const fn new() -> Self {
        Self { srtt: None, rttvar: Duration::ZERO }
    }

    /// Adds one RTT sample.
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt.clamp(Duration::from_millis(5), Duration::from_secs(2));
            }
            Some(srtt) => {
                let delta = rtt.abs_diff(srtt);
                let srtt = if rtt > srtt { srtt + delta / 8 } else { srtt - delta / 8 };
                self.srtt = Some(srtt);
                self.rttvar = if delta > self.rttvar {
                    self.rttvar + (delta - self.rttvar) / 4
                } else {
                    self.rttvar - (self.rttvar - delta) / 4
                };
            }
        }
    }

    /// Smoothed RTT, if any sample was taken.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// RTT variance.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The retransmission timeout `srtt + 4 rttvar`, clamped by `timing`.
    pub fn timeout(&self, timing: &Timing) -> Duration {
        match self.srtt {
            None => timing.initial_rtt_timeout,
            Some(s) => (s + 4 * self.rttvar).clamp(timing.min_rtt_timeout, timing.max_rtt_timeout),
        }
    }
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_and_clamps() {
        let t = Timing::template(4);
        let mut r = RttEstimator::new();
        assert_eq!(r.timeout(&t), Duration::from_millis(500));
        r.sample(Duration::from_micros(60));
        // srtt 60 µs + 4 * 5 ms, clamped up to the 100 ms minimum.
        assert_eq!(r.timeout(&t), Duration::from_millis(100));
        for _ in 0..100 {
            r.sample(Duration::from_secs(5));
        }
        assert_eq!(r.timeout(&t), Duration::from_millis(1250));
    }

    #[test]
    fn templates_match_nmap() {
        assert_eq!(Timing::template(5).max_retries, 2);
        assert_eq!(Timing::template(2).scan_delay, Duration::from_millis(400));
        assert_eq!(Timing::template(3).max_retries, 10);
        let t = Timing { max_rate: Some(1000.0), ..Timing::template(3) };
        assert_eq!(t.send_interval(), Duration::from_millis(1));
    }
}
