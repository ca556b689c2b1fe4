//! Data-plane role checks as Azure RBAC makes them for Service Bus and Event Grid: a Microsoft Entra ID
//! caller may send or receive only what the built-in roles assigned to it, at the namespace or topic (or
//! an entity below it), allow. A valid token alone is not enough.

/// Service Bus: send to a queue or topic.
pub const SERVICEBUS_SEND: &str = "Microsoft.ServiceBus/namespaces/messages/send/action";
/// Service Bus: receive, complete, abandon, renew, peek.
pub const SERVICEBUS_RECEIVE: &str = "Microsoft.ServiceBus/namespaces/messages/receive/action";
/// Event Grid: publish to a topic.
pub const EVENTGRID_SEND: &str = "Microsoft.EventGrid/events/send/action";

/// The built-in data roles of Service Bus and Event Grid, with Azure's names, ids and data actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltInRole {
    ServiceBusDataOwner,
    ServiceBusDataSender,
    ServiceBusDataReceiver,
    EventGridDataSender,
}

impl BuiltInRole {
    pub const ALL: [BuiltInRole; 4] = [
        BuiltInRole::ServiceBusDataOwner,
        BuiltInRole::ServiceBusDataSender,
        BuiltInRole::ServiceBusDataReceiver,
        BuiltInRole::EventGridDataSender,
    ];

    /// The role's name, as `az role definition list` shows it.
    pub fn name(self) -> &'static str {
        match self {
            BuiltInRole::ServiceBusDataOwner => "Azure Service Bus Data Owner",
            BuiltInRole::ServiceBusDataSender => "Azure Service Bus Data Sender",
            BuiltInRole::ServiceBusDataReceiver => "Azure Service Bus Data Receiver",
            BuiltInRole::EventGridDataSender => "EventGrid Data Sender",
        }
    }

    /// The role definition's id (the same in every subscription).
    pub fn id(self) -> &'static str {
        match self {
            BuiltInRole::ServiceBusDataOwner => "090c5cfd-751d-490a-894a-3ce6f1109419",
            BuiltInRole::ServiceBusDataSender => "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
            BuiltInRole::ServiceBusDataReceiver => "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
            BuiltInRole::EventGridDataSender => "d5a91429-5739-47e2-a06b-3470a27159e7",
        }
    }

    /// A role by its name or id (case-insensitive).
    pub fn parse(name_or_id: &str) -> Option<BuiltInRole> {
        let wanted = name_or_id.trim();
        BuiltInRole::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(wanted) || r.id().eq_ignore_ascii_case(wanted))
    }

    /// The data actions the role grants (`*` matches the rest).
    pub fn data_actions(self) -> &'static [&'static str] {
        match self {
            BuiltInRole::ServiceBusDataOwner => &["Microsoft.ServiceBus/*"],
            BuiltInRole::ServiceBusDataSender => &[SERVICEBUS_SEND],
            BuiltInRole::ServiceBusDataReceiver => &[SERVICEBUS_RECEIVE],
            BuiltInRole::EventGridDataSender => &[EVENTGRID_SEND],
        }
    }
}

/// One role assignment on a namespace or topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    /// The object id of the principal (a managed identity, a service principal).
    pub principal_id: String,
    pub role: BuiltInRole,
    /// Empty for the whole namespace or topic; else an entity below it (`queue`, `topic`,
    /// `topic/subscriptions/name`), which it covers with everything below.
    pub scope: String,
}

/// The role assignments of one namespace or topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub assignments: Vec<RoleAssignment>,
}

impl Access {
    /// Whether `principal` may perform `data_action` on `entity` (empty: the namespace or topic itself).
    pub fn allows(&self, principal: Option<&str>, data_action: &str, entity: &str) -> bool {
        let Some(principal) = principal else {
            return false;
        };
        self.assignments.iter().any(|a| {
            a.principal_id.eq_ignore_ascii_case(principal)
                && covers(&a.scope, entity)
                && a.role
                    .data_actions()
                    .iter()
                    .any(|granted| action_matches(granted, data_action))
        })
    }
}

/// Whether an assignment at `scope` reaches `entity`.
fn covers(scope: &str, entity: &str) -> bool {
    let (scope, entity) = (
        scope.trim_matches('/').to_ascii_lowercase(),
        entity.trim_matches('/').to_ascii_lowercase(),
    );
    scope.is_empty() || entity == scope || entity.starts_with(&format!("{scope}/"))
}

/// Azure's action matching: case-insensitive, a trailing `*` matches any rest.
fn action_matches(granted: &str, needed: &str) -> bool {
    let (granted, needed) = (granted.to_ascii_lowercase(), needed.to_ascii_lowercase());
    match granted.strip_suffix('*') {
        Some(prefix) => needed.starts_with(prefix),
        None => granted == needed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigned(role: BuiltInRole, scope: &str) -> Access {
        Access {
            assignments: vec![RoleAssignment {
                principal_id: "p1".into(),
                role,
                scope: scope.into(),
            }],
        }
    }

    #[test]
    fn roles_allow_their_data_actions_at_their_scope() {
        use BuiltInRole::*;
        let table = [
            // role, scope, principal, action, entity, allowed
            (
                ServiceBusDataSender,
                "",
                "p1",
                SERVICEBUS_SEND,
                "facts",
                true,
            ),
            (
                ServiceBusDataSender,
                "",
                "P1",
                SERVICEBUS_SEND,
                "facts",
                true,
            ),
            (
                ServiceBusDataSender,
                "",
                "p2",
                SERVICEBUS_SEND,
                "facts",
                false,
            ),
            (
                ServiceBusDataSender,
                "",
                "p1",
                SERVICEBUS_RECEIVE,
                "facts/subscriptions/a",
                false,
            ),
            (
                ServiceBusDataReceiver,
                "",
                "p1",
                SERVICEBUS_RECEIVE,
                "facts/subscriptions/a",
                true,
            ),
            (
                ServiceBusDataReceiver,
                "",
                "p1",
                SERVICEBUS_SEND,
                "facts",
                false,
            ),
            (ServiceBusDataOwner, "", "p1", SERVICEBUS_SEND, "q", true),
            (ServiceBusDataOwner, "", "p1", SERVICEBUS_RECEIVE, "q", true),
            (ServiceBusDataOwner, "", "p1", EVENTGRID_SEND, "", false),
            (
                ServiceBusDataReceiver,
                "facts",
                "p1",
                SERVICEBUS_RECEIVE,
                "facts/subscriptions/a",
                true,
            ),
            (
                ServiceBusDataReceiver,
                "Facts",
                "p1",
                SERVICEBUS_RECEIVE,
                "facts",
                true,
            ),
            (
                ServiceBusDataReceiver,
                "facts",
                "p1",
                SERVICEBUS_RECEIVE,
                "factsold",
                false,
            ),
            (
                ServiceBusDataReceiver,
                "facts",
                "p1",
                SERVICEBUS_RECEIVE,
                "galleon-dead",
                false,
            ),
            (EventGridDataSender, "", "p1", EVENTGRID_SEND, "", true),
            (EventGridDataSender, "", "p1", SERVICEBUS_SEND, "", false),
        ];
        for (role, scope, principal, action, entity, allowed) in table {
            assert_eq!(
                assigned(role, scope).allows(Some(principal), action, entity),
                allowed,
                "{} at '{scope}' for {principal}: {action} on '{entity}'",
                role.name()
            );
        }
        // A caller whose token names no principal has no role.
        assert!(!assigned(ServiceBusDataOwner, "").allows(None, SERVICEBUS_SEND, "q"));
    }

    #[test]
    fn roles_by_name_or_id() {
        for role in BuiltInRole::ALL {
            assert_eq!(BuiltInRole::parse(role.name()), Some(role));
            assert_eq!(BuiltInRole::parse(&role.id().to_uppercase()), Some(role));
        }
        assert_eq!(BuiltInRole::parse("Owner"), None);
    }
}
