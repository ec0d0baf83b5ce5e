//! Units of work and the messages that carry them.

use serde::{Deserialize, Serialize};

/// What a unit of work is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// A video chunk (every rung).
    Video,
    /// One audio track, whole.
    Audio,
    /// One subtitle track, converted to WebVTT.
    Text,
    /// The per-title ladder analysis of a job whose ladder is `auto`: sampled probe
    /// encodes that choose the rungs before any chunk is encoded. It runs on a worker, not
    /// in the ingest function: it needs an encoder, and the workers have one.
    Analysis,
    /// The frame table of a source whose container carries none (MKV, MPEG-TS, MXF, AVI,
    /// fragmented MP4): a scan of every packet, whose cost grows with the source, so it
    /// runs on a worker, not in the ingest function. A job waiting for it has this item
    /// alone; the scan plans the chunks and makes every other item of the job
    /// ([`crate::ports::JobStore::save_index`], [`crate::ports::JobStore::create_items`]).
    Index,
}

impl ItemKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Video => "video",
            ItemKind::Audio => "audio",
            ItemKind::Text => "text",
            ItemKind::Analysis => "analysis",
            ItemKind::Index => "index",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<ItemKind> {
        match s {
            "video" => Some(ItemKind::Video),
            "audio" => Some(ItemKind::Audio),
            "text" => Some(ItemKind::Text),
            "analysis" => Some(ItemKind::Analysis),
            "index" => Some(ItemKind::Index),
            _ => None,
        }
    }
}

/// A work item's identity: the message body on the queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ItemRef {
    /// Job id.
    pub job_id: String,
    /// Chunk or audio track.
    pub kind: ItemKind,
    /// Chunk index or track index.
    pub index: u32,
}

impl ItemRef {
    /// How the item is named in messages and errors ("chunk 3", "audio track 0").
    pub fn describe(&self) -> String {
        match self.kind {
            ItemKind::Video => format!("chunk {}", self.index),
            ItemKind::Audio => format!("audio track {}", self.index),
            ItemKind::Text => format!("subtitle track {}", self.index),
            ItemKind::Analysis => "the ladder analysis".to_string(),
            ItemKind::Index => "the frame index".to_string(),
        }
    }
}

/// A message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Encode this item.
    Item(ItemRef),
    /// Stitch and publish this job.
    Stitch {
        /// Job id.
        job_id: String,
    },
}
