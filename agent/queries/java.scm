; Java tags for the repo map.

(class_declaration name: (identifier) @name.definition.class) @definition.class
(interface_declaration name: (identifier) @name.definition.interface) @definition.interface
(enum_declaration name: (identifier) @name.definition.enum) @definition.enum
(record_declaration name: (identifier) @name.definition.class) @definition.class
(annotation_type_declaration name: (identifier) @name.definition.interface) @definition.interface
(method_declaration name: (identifier) @name.definition.method) @definition.method
(constructor_declaration name: (identifier) @name.definition.constructor) @definition.constructor

(method_invocation name: (identifier) @name.reference.call)
(method_invocation object: (identifier) @name.reference.attribute)
(object_creation_expression type: (type_identifier) @name.reference.class)
(type_identifier) @name.reference.type
(marker_annotation name: (identifier) @name.reference.annotation)
(annotation name: (identifier) @name.reference.annotation)
