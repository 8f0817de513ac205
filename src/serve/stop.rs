//! Stop texts: the reply ends where one first appears, and text that may
//! still become one is held back, so a stream never shows part of a stop.

/// Watches generated text for the request's stop texts.
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text not yet released: it ends with a prefix of some stop text.
    pending: String,
}

/// What one piece of generated text gives the client.
#[derive(Debug, PartialEq, Eq)]
pub struct Released {
    pub text: String,
    /// A stop text appeared: the reply ends after `text`.
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), pending: String::new() }
    }

    pub fn push(&mut self, piece: &str) -> Released {
        self.pending.push_str(piece);
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let text = self.pending[..at].to_string();
            self.pending.clear();
            return Released { text, stopped: true };
        }
        let keep = self.held_back();
        let text = self.pending[..self.pending.len() - keep].to_string();
        self.pending.drain(..self.pending.len() - keep);
        Released { text, stopped: false }
    }

    /// What is still held back when the reply ends for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Bytes at the end of `pending` that begin some stop text.
    fn held_back(&self) -> usize {
        let longest = |stop: &String| {
            (1..stop.len().min(self.pending.len() + 1))
                .rev()
                .find(|&n| stop.is_char_boundary(n) && self.pending.ends_with(&stop[..n]))
                .unwrap_or(0)
        };
        self.stops.iter().map(longest).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_before_a_stop_is_released_and_a_partial_stop_is_held_back() {
        let mut m = StopMatcher::new(&["END".into(), "\n\n".into()]);
        assert_eq!(m.push("hello E"), Released { text: "hello ".into(), stopped: false });
        assert_eq!(m.push("N"), Released { text: String::new(), stopped: false });
        assert_eq!(m.push("X more"), Released { text: "ENX more".into(), stopped: false });
        assert_eq!(m.push(" and\n"), Released { text: " and".into(), stopped: false });
        assert_eq!(m.push("\nafter"), Released { text: String::new(), stopped: true });
    }

    #[test]
    fn without_stops_everything_passes_and_the_end_flushes() {
        let mut m = StopMatcher::new(&[]);
        assert_eq!(m.push("héllo"), Released { text: "héllo".into(), stopped: false });
        let mut m = StopMatcher::new(&["ab".into()]);
        assert_eq!(m.push("xa").text, "x");
        assert_eq!(m.finish(), "a");
    }
}
