//! Little-endian integer fields with alignment 1.
//!
//! Every multi-byte field of a frame is one of these newtypes over a byte array, so the frame
//! structs have alignment 1 (they can be viewed in place from any `&[u8]`, whatever its
//! address) and the byte order is explicit at every use.

use core::fmt;

use bytemuck::{Pod, Zeroable};

macro_rules! le_int {
    ($(#[$doc:meta])* $name:ident, $int:ty, $n:literal) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// The field holding `value`.
            #[inline]
            pub const fn new(value: $int) -> Self {
                Self(value.to_le_bytes())
            }

            /// The value of the field.
            #[inline]
            pub const fn get(self) -> $int {
                <$int>::from_le_bytes(self.0)
            }
        }

        impl From<$int> for $name {
            #[inline]
            fn from(value: $int) -> Self {
                Self::new(value)
            }
        }

        impl From<$name> for $int {
            #[inline]
            fn from(field: $name) -> $int {
                field.get()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.get(), f)
            }
        }
    };
}

le_int!(
    /// A little-endian `u16` field.
    U16Le, u16, 2
);
le_int!(
    /// A little-endian `u32` field.
    U32Le, u32, 4
);
le_int!(
    /// A little-endian `u64` field.
    U64Le, u64, 8
);
le_int!(
    /// A little-endian two's-complement `i64` field.
    I64Le, i64, 8
);

const _: () = assert!(core::mem::size_of::<U16Le>() == 2 && core::mem::align_of::<U16Le>() == 1);
const _: () = assert!(core::mem::size_of::<U32Le>() == 4 && core::mem::align_of::<U32Le>() == 1);
const _: () = assert!(core::mem::size_of::<U64Le>() == 8 && core::mem::align_of::<U64Le>() == 1);
const _: () = assert!(core::mem::size_of::<I64Le>() == 8 && core::mem::align_of::<I64Le>() == 1);
