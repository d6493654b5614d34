//! `inspect NAME|ID...`: containers, images and networks as JSON documents shaped like
//! Docker's (networks as `network inspect` shows them, in Podman's form), and with `--explain`
//! the kernel objects behind each field, as commands a person can type.

pub mod container;
pub mod container_doc;
pub mod explain;
pub mod image;

use serde_json::Value;

use super::{Engine, EngineError, Result};
use crate::image::ImageError;

/// What kind of object to look for (`--type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A container, by name or ID prefix.
    Container,
    /// An image, by reference or ID prefix.
    Image,
    /// A network, by name.
    Network,
}

impl Kind {
    /// `container`, `image` or `network`.
    pub fn parse(text: &str) -> Result<Kind> {
        match text {
            "container" => Ok(Kind::Container),
            "image" => Ok(Kind::Image),
            "network" => Ok(Kind::Network),
            other => Err(EngineError::Invalid(format!("invalid --type {other:?}: use container, image or network"))),
        }
    }

    fn word(kind: Option<Kind>) -> &'static str {
        match kind {
            None => "object",
            Some(Kind::Container) => "container",
            Some(Kind::Image) => "image",
            Some(Kind::Network) => "network",
        }
    }
}

/// One object found by `inspect`, with the facts about it.
#[derive(Debug)]
pub enum Object {
    /// A container.
    Container(Box<container::ContainerFacts>),
    /// An image.
    Image(Box<image::ImageFacts>),
    /// A network, as `network inspect` shows it.
    Network(Value),
}

/// An object's document: a container's keeps Docker's field order when printed.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Document {
    /// A container's.
    Container(Box<container_doc::ContainerDoc>),
    /// An image's or a network's.
    Other(Value),
}

impl Document {
    /// As a JSON value (what templates read).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("documents serialize")
    }
}

impl Object {
    /// The JSON document.
    pub fn document(&self) -> Document {
        match self {
            Object::Container(f) => Document::Container(Box::new(container_doc::document(f))),
            Object::Image(f) => Document::Other(image::document(f)),
            Object::Network(v) => Document::Other(v.clone()),
        }
    }
}

impl Engine {
    /// Finds what `name` names: a container first, then an image, then a network (or only
    /// the given kind). Nothing by that name is `NoSuchObject`.
    pub fn find_object(&self, name: &str, kind: Option<Kind>) -> Result<Object> {
        if kind.is_none() || kind == Some(Kind::Container) {
            match self.find(name) {
                Ok(row) => return Ok(Object::Container(Box::new(self.container_facts(&row)?))),
                Err(EngineError::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if kind.is_none() || kind == Some(Kind::Image) {
            match self.images().resolve(name) {
                Ok(row) => return Ok(Object::Image(Box::new(self.image_facts(&row)?))),
                Err(ImageError::Unknown(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if (kind.is_none() || kind == Some(Kind::Network)) && self.db.network(name)?.is_some() {
            return Ok(Object::Network(self.inspect_network(name)?));
        }
        Err(EngineError::NoSuchObject { kind: Kind::word(kind), name: name.into() })
    }
}
