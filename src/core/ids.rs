//! Newtype ids. Socket, agent, unit and job ids are minted by their owners and
//! never reused within one relay process.

use std::fmt;

macro_rules! id {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub u64);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id!(SocketId, "socket#");
id!(AgentId, "agent#");
id!(UnitId, "unit#");
id!(JobId, "job#");
id!(ProjectId, "project#");
id!(AgentKind, "agent-kind#");

/// Where a session runs: which configured agent, in which configured project
/// (indices into the relay's lists; the first of each is the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Place {
    pub agent: AgentKind,
    pub project: ProjectId,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.agent, self.project)
    }
}

/// A device's self-chosen name (`?client_id=`), stable across its reconnects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub String);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
