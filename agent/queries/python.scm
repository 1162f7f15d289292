; Python tags for the repo map.
; Captures: @name.definition.<kind> names a definition whose whole node is @definition.<kind>;
; @name.reference.<kind> names a use of an identifier defined elsewhere.

(class_definition name: (identifier) @name.definition.class) @definition.class
(function_definition name: (identifier) @name.definition.function) @definition.function
(module (expression_statement (assignment left: (identifier) @name.definition.constant) @definition.constant))

(call function: (identifier) @name.reference.call)
(call function: (attribute attribute: (identifier) @name.reference.call))
(decorator (identifier) @name.reference.call)
(decorator (attribute attribute: (identifier) @name.reference.call))
(argument_list (identifier) @name.reference.class)
(type (identifier) @name.reference.type)
(type (attribute attribute: (identifier) @name.reference.type))
(attribute object: (identifier) @name.reference.attribute)
(import_from_statement name: (dotted_name (identifier) @name.reference.import))
(import_from_statement name: (aliased_import name: (dotted_name (identifier) @name.reference.import)))
