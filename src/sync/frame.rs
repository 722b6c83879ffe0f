//! Reading and writing frames on a stream: an 8-byte header (type, length, both u32 LE) and the
//! payload. Lengths are checked before anything is allocated, and the payload buffer grows only
//! as bytes actually arrive, so a peer announcing 16 MiB and sending nothing holds no memory.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::wire::{HEADER_LEN, MsgType};

#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    Closed,
    Io(std::io::Error),
    UnknownType(u32),
    TooLarge {
        kind: MsgType,
        len: u32,
        max: usize,
    },
    /// The connection ended inside a frame.
    Truncated {
        expected: u32,
        got: usize,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
            FrameError::UnknownType(t) => write!(f, "unknown message type {t:#x}"),
            FrameError::TooLarge { kind, len, max } => {
                write!(f, "{kind:?} frame of {len} bytes exceeds the {max}-byte limit")
            }
            FrameError::Truncated { expected, got } => {
                write!(f, "truncated frame: {got} of {expected} payload bytes")
            }
        }
    }
}

pub struct Frame {
    pub kind: MsgType,
    pub payload: Vec<u8>,
}

/// Reads one frame whose payload may be at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Frame, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match r.read(&mut header[filled..]).await {
            Ok(0) if filled == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated { expected: HEADER_LEN as u32, got: filled }),
            Ok(n) => filled += n,
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let raw_kind = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    let kind = MsgType::from_u32(raw_kind).ok_or(FrameError::UnknownType(raw_kind))?;
    if len as usize > max {
        return Err(FrameError::TooLarge { kind, len, max });
    }
    let mut payload = Vec::with_capacity((len as usize).min(64 * 1024));
    let got = r.take(u64::from(len)).read_to_end(&mut payload).await.map_err(FrameError::Io)?;
    if got != len as usize {
        return Err(FrameError::Truncated { expected: len, got });
    }
    Ok(Frame { kind, payload })
}

/// Reads and drops `len` payload bytes (an oversized frame that is answered rather than closed),
/// through a small buffer: nothing the size of the payload is allocated.
pub async fn discard<R: AsyncRead + Unpin>(r: &mut R, len: u64) -> Result<(), FrameError> {
    let got = tokio::io::copy(&mut r.take(len), &mut tokio::io::sink()).await.map_err(FrameError::Io)?;
    if got != len {
        return Err(FrameError::Truncated { expected: len as u32, got: got as usize });
    }
    Ok(())
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn header_checks() {
        let mut ok: &[u8] = &[0x30, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(read_frame(&mut ok, 16).await.unwrap().kind, MsgType::Ping);
        let mut empty: &[u8] = &[];
        assert!(matches!(read_frame(&mut empty, 16).await, Err(FrameError::Closed)));
        let mut short: &[u8] = &[0x30, 0, 0];
        assert!(matches!(read_frame(&mut short, 16).await, Err(FrameError::Truncated { .. })));
        let mut unknown: &[u8] = &[0x99, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(read_frame(&mut unknown, 16).await, Err(FrameError::UnknownType(0x99))));
        let mut big: &[u8] = &[0x20, 0, 0, 0, 17, 0, 0, 0];
        assert!(matches!(read_frame(&mut big, 16).await, Err(FrameError::TooLarge { len: 17, .. })));
        let mut cut: &[u8] = &[0x20, 0, 0, 0, 4, 0, 0, 0, 1, 2];
        assert!(matches!(read_frame(&mut cut, 16).await, Err(FrameError::Truncated { expected: 4, got: 2 })));
    }
}
