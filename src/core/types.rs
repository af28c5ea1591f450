//! Names from the external contract (../README "Contract"): order states, exception
//! reasons, segment modes and audit actors. Their string forms are stored in D1 and
//! typed by operators, so they never change spelling.

use serde::{Deserialize, Serialize};

macro_rules! contract_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The contract spelling, as stored in D1 and KV.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the contract spelling; `None` for anything else.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

contract_enum!(
    /// Where an order is in the lane.
    State {
        New => "new",
        Paid => "paid",
        FraudCheck => "fraud-check",
        Hold => "hold",
        ReadyForFulfilment => "ready-for-fulfilment",
        Submitted => "submitted",
        Fulfilled => "fulfilled",
        Cancelled => "cancelled",
    }
);

contract_enum!(
    /// Why an order is in `hold`.
    Reason {
        Payment => "payment",
        Address => "address",
        Inventory => "inventory",
        Fraud => "fraud",
        Manual => "manual",
        Fulfilment => "fulfilment",
    }
);

contract_enum!(
    /// A segment's routing mode, from KV `segment:<name>:mode`.
    Mode {
        Auto => "auto",
        Shadow => "shadow",
        Manual => "manual",
    }
);

contract_enum!(
    /// Where the cancel request for an order the warehouse accepted stands
    /// (`orders.cancel_state`).
    CancelState {
        Requested => "requested",
        Confirmed => "confirmed",
        Shipped => "shipped",
        Failed => "failed",
    }
);

impl Reason {
    /// The Shopify `FulfillmentHoldReason` this exception maps to.
    pub fn shopify_hold_reason(self) -> &'static str {
        match self {
            Reason::Payment => "AWAITING_PAYMENT",
            Reason::Address => "INCORRECT_ADDRESS",
            Reason::Inventory => "INVENTORY_OUT_OF_STOCK",
            Reason::Fraud => "HIGH_RISK_OF_FRAUD",
            Reason::Manual | Reason::Fulfilment => "OTHER",
        }
    }
}

/// KV key holding a segment's mode.
pub fn mode_key(segment: &str) -> String {
    format!("segment:{segment}:mode")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_spellings_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_string(s).ok(), Some(format!("\"{}\"", s.as_str())));
        }
        assert_eq!(State::parse("ready_for_fulfilment"), None);
        assert_eq!(State::ReadyForFulfilment.as_str(), "ready-for-fulfilment");
        assert_eq!(State::FraudCheck.as_str(), "fraud-check");
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
        }
        assert_eq!(Mode::parse("shadow"), Some(Mode::Shadow));
        assert_eq!(Mode::parse("Auto"), None);
    }

    #[test]
    fn hold_reasons_match_shopify() {
        assert_eq!(Reason::Payment.shopify_hold_reason(), "AWAITING_PAYMENT");
        assert_eq!(Reason::Address.shopify_hold_reason(), "INCORRECT_ADDRESS");
        assert_eq!(Reason::Inventory.shopify_hold_reason(), "INVENTORY_OUT_OF_STOCK");
        assert_eq!(Reason::Fraud.shopify_hold_reason(), "HIGH_RISK_OF_FRAUD");
        assert_eq!(Reason::Fulfilment.shopify_hold_reason(), "OTHER");
        assert_eq!(mode_key("eu-retail"), "segment:eu-retail:mode");
    }
}
