; JavaScript-only patterns (class names are plain identifiers here, type_identifier in TypeScript).

(class_declaration name: (identifier) @name.definition.class) @definition.class
(class name: (identifier) @name.definition.class) @definition.class
(class_heritage (identifier) @name.reference.class)
(class_heritage (member_expression property: (property_identifier) @name.reference.class))
